"""mathforge: the DeepSeekMath recipe as gRPC services and torchrun stages on Kubernetes."""

__version__ = "0.1.0"

"""The paper's unified view of SFT, RFT, Online RFT, DPO and GRPO (DeepSeekMath §5.2.1): one gradient

    E[(q, o) ~ D] [ 1/|o| sum_t GC(q, o, t) grad log pi_theta(o_t | q, o_<t) ]

where a method is only its data source D (sources.py) and its gradient coefficient GC
(coefficients.py); methods.py names them. Every method drives the GRPO trainer's one update,
checkpointing, resume, metrics and services (training/grpo/loop.py).
"""

"""The committed stubs match what `make protos` generates from protos/."""

from mathforge.runtime import protogen


def test_committed_stubs_are_current():
    assert protogen.main(["--check"]) == 0, "stubs are stale: run `make protos` and commit"


def test_every_service_has_info_and_a_documented_rpc():
    from mathforge.runtime.registry import SERVICES
    from mathforge.v1 import classifier_pb2, dedup_pb2, evaluator_pb2, reward_pb2, sampler_pb2

    modules = [classifier_pb2, dedup_pb2, evaluator_pb2, reward_pb2, sampler_pb2]
    names = {f"mathforge.v1.{svc}" for m in modules for svc in m.DESCRIPTOR.services_by_name}
    assert names == {spec.proto_name for spec in SERVICES.values()}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            assert "Info" in service.methods_by_name, service.full_name

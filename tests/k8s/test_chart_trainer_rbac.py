"""The chart's trainer RBAC: off by default; when on, the GRPO trainer's ServiceAccount may create,
read and delete PyTorchJobs and create/update ConfigMaps in the release namespace, and nothing
else (no cluster-wide grant, no other resource, no list/watch of other objects)."""

from __future__ import annotations

from tests.k8s.test_chart import NAMESPACE, by_kind, render


def test_no_trainer_identity_unless_asked_for() -> None:
    kinds = {o["kind"] for o in render()}
    assert kinds.isdisjoint({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})


def test_the_trainer_may_submit_and_follow_pytorchjobs_in_its_namespace_only() -> None:
    objects = render({"trainerRbac": {"create": True, "serviceAccountName": ""}})
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    (role,) = by_kind(objects, "Role").values()
    assert role["metadata"]["namespace"] == NAMESPACE
    grants = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in role["rules"]}
    assert grants == {
        (("kubeflow.org",), ("pytorchjobs",)): ["create", "delete", "get"],
        (("",), ("configmaps",)): ["create", "update"],
    }
    (binding,) = by_kind(objects, "RoleBinding").values()
    account = by_kind(objects, "ServiceAccount")[binding["subjects"][0]["name"]]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert account["metadata"]["name"] == "mathforge-trainer"
    assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_the_trainer_account_name_can_be_chosen() -> None:
    objects = render({"trainerRbac": {"create": True, "serviceAccountName": "grpo-runner"}})
    assert "grpo-runner" in by_kind(objects, "ServiceAccount")
    assert by_kind(objects, "RoleBinding")["grpo-runner"]["subjects"][0]["name"] == "grpo-runner"

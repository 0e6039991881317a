"""The mount plan as data: what a spec and a scratch dir turn into, and what spares may prepare."""

from __future__ import annotations

from pytest_minicontainer.runtime import mounts

BASE = {"lowers": ["/s/layers/a", "/s/layers/b"], "overlays": [], "binds": [], "resolv": None,
        "hostname": "h1", "network": "none"}
HOST = dict(BASE, overlays=[{"target": "/usr", "lowers": ["/usr"]},
                            {"target": "/opt/py/3.11", "lowers": ["/opt/py/3.11"]}])


def test_plan_makes_the_writable_layer_inside_the_scratch_dir_then_pivots() -> None:
    plan = mounts.build_plan(HOST, "/run/c1")
    kinds = [type(op).__name__ for op in plan]
    assert kinds == ["MakePrivate", "MakeDirs", "Overlay", "Overlay", "Overlay", "Proc", "DevTmpfs", "PivotRoot"]
    dirs = plan[1]
    assert isinstance(dirs, mounts.MakeDirs)
    assert dirs.paths == ("/run/c1/upper", "/run/c1/work", "/run/c1/merged", "/run/c1/upper/usr", "/run/c1/work0",
                          "/run/c1/upper/opt", "/run/c1/upper/opt/py", "/run/c1/upper/opt/py/3.11", "/run/c1/work1")
    root, usr = plan[2], plan[3]
    assert isinstance(root, mounts.Overlay) and isinstance(usr, mounts.Overlay)
    assert (root.target, root.lowers, root.upper, root.work) == ("/", ("/s/layers/a", "/s/layers/b"),
                                                                 "/run/c1/upper", "/run/c1/work")
    assert (usr.target, usr.upper, usr.work) == ("/usr", "/run/c1/upper/usr", "/run/c1/work0")
    assert plan[-1] == mounts.PivotRoot("/run/c1/merged")


def test_slirp_gets_its_own_resolver_file_bound_read_only() -> None:
    plan = mounts.build_plan(dict(BASE, resolv="slirp", network="slirp"), "/run/c2")
    assert mounts.WriteFile("/run/c2/resolv.conf", "nameserver 10.0.2.3\n") in plan
    assert mounts.Bind("/run/c2/merged", "/run/c2/resolv.conf", "/etc/resolv.conf", True) in plan
    assert plan.index(mounts.Bind("/run/c2/merged", "/run/c2/resolv.conf", "/etc/resolv.conf", True)) \
        < plan.index(mounts.Proc("/run/c2/merged", "/proc"))


def test_what_a_spare_may_prepare() -> None:
    key = mounts.template_key(BASE)
    assert key is not None
    assert mounts.template_key(dict(BASE, hostname="other")) == key  # set after the hand-over
    assert mounts.template_key(dict(BASE, lowers=["/s/layers/a"])) != key
    assert mounts.template_key(dict(BASE, resolv="slirp", network="slirp")) != key
    assert mounts.template_key(HOST) not in (None, key)
    # bind sources could be replaced between preparation and use; the host network has no spare
    assert mounts.template_key(dict(BASE, binds=[{"source": "/src", "target": "/mnt", "readonly": True}])) is None
    assert mounts.template_key(dict(BASE, network="host")) is None
    # a writable layer can be reused for the same layers below it, whatever the mounts
    assert mounts.layers_key(dict(BASE, binds=[{"source": "/src", "target": "/mnt"}])) == mounts.layers_key(BASE)
    assert mounts.layers_key(HOST) != mounts.layers_key(BASE)

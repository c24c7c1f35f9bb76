"""The dependency graph: edges both ways, [Install] enablement, host units."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotte.supervisor.deps import (
    DEFAULT_HOST_UNITS,
    INVERSE,
    UNIT_FILE_RELATIONS,
    DependencyGraph,
    HostUnit,
    HostUnits,
    InstallError,
    Relation,
    UnitKind,
)
from flotte.supervisor.jobs import build_transaction
from flotte.unit import load_text
from flotte.unit.loader import Unit

R = Relation
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


def unit(name: str, deps: str = "", install: str = "", service: str = "") -> Unit:
    text = f"[Unit]\n{deps}\n[Service]\nExecStart=/bin/true\n{service}\n"
    if install:
        text += f"[Install]\n{install}\n"
    u = load_text(text, name)
    assert u.ok, u.diagnostics
    return u


def seed(chapter: str, template: str, instance: str) -> Unit:
    text = (SEED / chapter / template).read_text()
    return load_text(text, template.replace("@.", f"@{instance}."))


# -- edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", UNIT_FILE_RELATIONS, ids=lambda r: r.value)
def test_every_relation_is_stored_with_its_inverse(rel: Relation) -> None:
    g = DependencyGraph([unit("a.service", f"{rel.value}=b.service")])
    assert g.deps("a.service", rel) == ("b.service",)
    assert g.deps("b.service", INVERSE[rel]) == ("a.service",)
    assert g.has("b.service", INVERSE[rel], "a.service")


def test_inverse_table_is_an_involution() -> None:
    for rel, inv in INVERSE.items():
        assert INVERSE[inv] is rel
    assert INVERSE[R.BEFORE] is R.AFTER
    assert INVERSE[R.REQUIRES] is R.REQUIRED_BY
    assert INVERSE[R.BINDS_TO] is R.BOUND_BY
    assert INVERSE[R.PART_OF] is R.CONSISTS_OF
    assert INVERSE[R.CONFLICTS] is R.CONFLICTED_BY
    assert INVERSE[R.WANTS] is R.WANTED_BY
    assert INVERSE[R.REQUISITE] is R.REQUISITE_OF


def test_before_and_after_are_one_fact_whichever_file_says_it() -> None:
    g1 = DependencyGraph([unit("a.service", "Before=b.service"), unit("b.service")])
    g2 = DependencyGraph([unit("a.service"), unit("b.service", "After=a.service")])
    for g in (g1, g2):
        assert g.deps("a.service", R.BEFORE) == ("b.service",)
        assert g.deps("b.service", R.AFTER) == ("a.service",)


def test_edges_are_reference_counted_per_source() -> None:
    # a says After=b and b says Before=a: forgetting a keeps b's statement
    g = DependencyGraph([unit("a.service", "After=b.service"), unit("b.service", "Before=a.service")])
    g.remove("a.service")
    assert g.deps("b.service", R.BEFORE) == ("a.service",)
    g.remove("b.service")
    assert g.deps("b.service", R.BEFORE) == ()
    assert g.dependencies("a.service") == {}


def test_reloading_a_unit_replaces_its_edges() -> None:
    g = DependencyGraph([unit("a.service", "Requires=b.service")])
    g.add(unit("a.service", "Wants=c.service"))
    assert g.deps("a.service", R.REQUIRES) == ()
    assert g.deps("b.service", R.REQUIRED_BY) == ()
    assert g.deps("a.service", R.WANTS) == ("c.service",)


def test_deps_of_several_relations_are_merged_and_sorted() -> None:
    g = DependencyGraph([unit("a.service", "Requires=z.service b.service\nBindsTo=b.service")])
    assert g.deps("a.service", R.REQUIRES, R.BINDS_TO) == ("b.service", "z.service")


def test_dependency_values_come_expanded_from_the_loader() -> None:
    """Specifiers and template names in [Unit] are resolved at load time (§2.3)."""
    apache = seed("ch10", "apache@.service", "8080")
    secretary = seed("ch10", "apache-secretary@.service", "8080")
    g = DependencyGraph([apache, secretary])
    assert g.deps("apache@8080.service", R.REQUIRES) == (
        "apache-secretary@8080.service", "docker.service", "etcd.service")
    assert g.deps("apache@8080.service", R.BEFORE) == ("apache-secretary@8080.service",)
    assert g.deps("apache@8080.service", R.BOUND_BY) == ("apache-secretary@8080.service",)
    assert g.deps("apache@8080.service", R.REQUIRED_BY) == ("apache-secretary@8080.service",)
    assert g.deps("apache-secretary@8080.service", R.AFTER) == (
        "apache@8080.service", "etcd.service")
    # a template named in Requires= takes the depending unit's instance
    g.add(unit("web@7.service", "Requires=sidecar@.service %p-log.service"))
    assert g.deps("web@7.service", R.REQUIRES) == ("sidecar@7.service", "web-log.service")


def test_self_dependencies_are_dropped() -> None:
    g = DependencyGraph([load_text("[Unit]\nRequires=a.service\nAfter=a.service\n"
                                   "[Service]\nExecStart=/bin/true\n", "a.service")])
    assert g.dependencies("a.service") == {}


def test_dependencies_for_status_list_forward_names_first() -> None:
    g = DependencyGraph([unit("a.service", "Requires=b.service\nAfter=b.service"),
                         unit("c.service", "Wants=a.service")])
    assert list(g.dependencies("a.service").items()) == [
        ("Requires", ("b.service",)), ("After", ("b.service",)), ("WantedBy", ("c.service",))]


def test_masked_units_have_no_edges() -> None:
    g = DependencyGraph([load_text("", "a.service")])
    assert g.unit("a.service") is not None
    assert g.kind("a.service") is UnitKind.FLOTTE
    assert g.load_problem("a.service") == "Unit a.service is masked."


# -- kinds, host units, states ---------------------------------------------------------------


def test_unit_kinds() -> None:
    g = DependencyGraph([unit("a.service")])
    assert g.kind("a.service") is UnitKind.FLOTTE
    assert g.kind("docker.service") is UnitKind.HOST
    assert g.kind("network-online.target") is UnitKind.HOST
    assert g.kind("systemd-resolved.service") is UnitKind.HOST  # a default pattern
    assert g.kind("nobody.service") is UnitKind.UNKNOWN
    # a flotte unit shadows the host unit of the same name
    g.add(unit("docker.service"))
    assert g.kind("docker.service") is UnitKind.FLOTTE


def test_default_host_units_cover_the_usual_suspects() -> None:
    names = {h.name for h in DEFAULT_HOST_UNITS}
    for n in ("network.target", "network-online.target", "multi-user.target", "default.target",
              "basic.target", "sysinit.target", "local-fs.target", "remote-fs.target",
              "time-sync.target", "nss-lookup.target", "docker.service", "docker.socket",
              "etcd.service", "etcd2.service", "fleet.service", "flanneld.service",
              "sshd.service", "systemd-*.service"):
        assert n in names
    assert all(h.check is None for h in DEFAULT_HOST_UNITS)


def test_host_units_are_configurable() -> None:
    h = HostUnits(["my-vpn.service", HostUnit("docker.service", "docker info")])
    assert h.check("docker.service") == "docker info"
    assert h.get("my-vpn.service") == HostUnit("my-vpn.service")
    h.remove("sshd.service")
    assert "sshd.service" not in h
    assert "sshd.service" in HostUnits()
    bare = HostUnits(defaults=False)
    assert "docker.service" not in bare
    bare.add("app-*.service", "true")
    assert bare.get("app-x.service") == HostUnit("app-x.service", "true")
    assert "x-app.service" not in bare


def test_exact_host_names_win_over_patterns() -> None:
    h = HostUnits(defaults=False)
    h.add("systemd-*.service", "generic")
    h.add("systemd-journald.service", "journal")
    assert h.check("systemd-journald.service") == "journal"
    assert h.check("systemd-logind.service") == "generic"


def test_host_units_file_format() -> None:
    h = HostUnits.parse("""
        # host units of this machine
        docker.service   docker info
        my-vpn.service\tip link show tun0
        -sshd.service
        ; comment
        etcd-*.service
    """)
    assert h.check("docker.service") == "docker info"
    assert h.check("my-vpn.service") == "ip link show tun0"
    assert "sshd.service" not in h
    assert h.get("etcd-proxy.service") == HostUnit("etcd-proxy.service")
    assert "network.target" in h
    assert "network.target" not in HostUnits.parse("x.service", defaults=False)
    with pytest.raises(ValueError, match=r"line 2: 'docker' is not a unit name"):
        HostUnits.parse("a.service\ndocker  docker info\n")


def test_planning_states() -> None:
    h = HostUnits()
    h.add("etcd.service", "etcdctl endpoint health")
    g = DependencyGraph([unit("a.service")], host=h)
    assert g.state("a.service") == "inactive"
    assert g.state("a.service", {"a.service": "active"}) == "active"
    assert g.state("docker.service") == "active"  # provided, no check: assumed up
    assert g.state("etcd.service") == "inactive"  # has a check that has not run yet
    assert g.state("etcd.service", {"etcd.service": "active"}) == "active"
    assert g.state("nobody.service") == "inactive"


def test_load_problems_use_systemd_wording() -> None:
    bad = load_text("[Service]\nType=simple\n", "bad.service")  # no ExecStart=
    assert bad.load_state == "bad-setting"
    g = DependencyGraph([unit("a.service"), bad, load_text("", "masked.service")])
    assert g.load_problem("a.service") is None
    assert g.load_problem("docker.service") is None
    assert g.load_problem("nobody.service") == "Unit nobody.service not found."
    assert g.load_problem("masked.service") == "Unit masked.service is masked."
    assert g.load_problem("bad.service") == "Unit bad.service has a bad unit file setting."
    assert g.description("bad.service") == "bad.service"


def test_can_reload_and_descriptions() -> None:
    g = DependencyGraph([unit("a.service", "Description=The A", service="ExecReload=/bin/true"),
                         unit("b.service"), unit("c.service", "PropagatesReloadTo=b.service")])
    assert g.can_reload("a.service")
    assert not g.can_reload("b.service")
    assert g.can_reload("c.service")
    assert not g.can_reload("docker.service")
    assert g.description("a.service") == "The A"
    assert g.description("docker.service") == "docker.service"


def test_missing_required_units_are_listed() -> None:
    g = DependencyGraph([unit("a.service", "Requires=nope.service docker.service\n"
                                           "Wants=ghost.service\nBindsTo=b.service"),
                         unit("c.service", "Requisite=nope.service")])
    assert g.missing() == {"nope.service": ["a.service", "c.service"],
                           "b.service": ["a.service"]}


# -- [Install] -----------------------------------------------------------------------------


def test_fleet_sidekick_wantedby_pulls_it_in_with_its_main_unit() -> None:
    g = DependencyGraph([unit("hello.service"),
                         unit("hello-discovery.service", "BindsTo=hello.service\n"
                              "After=hello.service", "WantedBy=hello.service")])
    assert g.install_state("hello-discovery.service") == "disabled"
    assert build_transaction(g, "hello.service", "start").order == ["hello.service/start"]
    changes = g.enable("hello-discovery.service")
    assert [str(c) for c in changes] == ["Added hello.service Wants=hello-discovery.service"]
    assert g.deps("hello.service", R.WANTS) == ("hello-discovery.service",)
    assert g.deps("hello-discovery.service", R.WANTED_BY) == ("hello.service",)
    assert g.is_enabled("hello-discovery.service")
    assert build_transaction(g, "hello.service", "start").order == [
        "hello.service/start", "hello-discovery.service/start"]
    g.disable("hello-discovery.service")
    assert g.deps("hello.service", R.WANTS) == ()
    assert g.install_state("hello-discovery.service") == "disabled"


def test_requiredby_and_also() -> None:
    g = DependencyGraph([
        unit("app.service", install="RequiredBy=multi-user.target\nAlso=app-log.service"),
        unit("app-log.service", install="WantedBy=app.service"),
    ])
    changes = g.enable("app.service")
    assert {str(c) for c in changes} == {"Added multi-user.target Requires=app.service",
                                         "Added app.service Wants=app-log.service"}
    assert g.enabled == {"app.service", "app-log.service"}
    assert g.deps("multi-user.target", R.REQUIRES) == ("app.service",)
    # app-log.service comes with app.service's start (its Wants=), no need to list it
    assert g.boot_units() == ["app.service"]
    removed = g.disable("app.service")
    assert {c.action for c in removed} == {"remove"}
    assert g.enabled == frozenset()
    assert g.boot_units() == []


def test_also_loops_and_unloaded_also_units() -> None:
    g = DependencyGraph([unit("a.service", install="Also=b.service later.service"),
                         unit("b.service", install="Also=a.service")])
    changes = g.enable("a.service")
    assert g.enabled == {"a.service", "b.service", "later.service"}
    assert any("later.service is not loaded" in str(c) for c in changes)
    g.add(unit("later.service", install="WantedBy=a.service"))
    assert g.deps("a.service", R.WANTS) == ("later.service",)


def test_install_specifiers_and_template_targets() -> None:
    g = DependencyGraph([unit("worker@3.service",
                              install="WantedBy=pool@.service %p-group@%i.target\n"
                                      "RequiredBy=%n.extra.target")])
    g.enable("worker@3.service")
    assert g.deps("worker@3.service", R.WANTED_BY) == ("pool@3.service", "worker-group@3.target")
    assert g.deps("worker@3.service", R.REQUIRED_BY) == ("worker@3.service.extra.target",)


def test_install_problems_are_warnings() -> None:
    g = DependencyGraph([unit("a.service", install="WantedBy=%y.target not-a-unit"),
                         unit("static.service")])
    changes = g.enable("a.service")
    assert [c.action for c in changes] == ["warning", "warning"]
    assert "not allowed" in changes[0].message
    assert "invalid unit 'not-a-unit'" in changes[1].message
    assert g.is_enabled("a.service")
    static = g.enable("static.service")
    assert g.install_state("static.service") == "static"
    assert "static" in static[0].message
    assert not g.is_enabled("static.service")
    with pytest.raises(InstallError, match=r"Unit file nope.service does not exist"):
        g.enable("nope.service")
    assert g.install_state("nope.service") == "not-found"


def test_enablement_survives_reload_and_is_kept_by_name() -> None:
    g = DependencyGraph(enabled=["side.service"])
    assert g.is_enabled("side.service")
    g.add(unit("side.service", install="WantedBy=main.service"))
    assert g.deps("main.service", R.WANTS) == ("side.service",)
    # a reloaded file with a new [Install] moves the edge (like systemctl reenable)
    g.add(unit("side.service", install="WantedBy=other.service"))
    assert g.deps("main.service", R.WANTS) == ()
    assert g.deps("other.service", R.WANTS) == ("side.service",)
    g.remove("side.service")
    assert g.deps("other.service", R.WANTS) == ()
    assert g.is_enabled("side.service")


def test_install_edges_and_unit_edges_add_up() -> None:
    g = DependencyGraph([unit("main.service", "Wants=side.service"),
                         unit("side.service", install="WantedBy=main.service")])
    g.enable("side.service")
    g.disable("side.service")
    assert g.deps("main.service", R.WANTS) == ("side.service",)  # main's own Wants= stays


def test_boot_units_follow_targets() -> None:
    g = DependencyGraph([unit("a.service", install="WantedBy=multi-user.target"),
                         unit("b.service", install="WantedBy=app.target"),
                         load_text("[Unit]\nDescription=apps\n[Install]\nWantedBy=default.target",
                                   "app.target"),
                         unit("c.service", install="WantedBy=graphical.target")])
    for n in ("a.service", "b.service", "app.target", "c.service"):
        g.enable(n)
    assert g.boot_units() == ["a.service", "app.target", "b.service"]

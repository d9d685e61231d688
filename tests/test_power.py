"""The power model: calibration points, linearity, static power, target-file checks, CLI output."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from importlib import resources

import pytest

from nfc.arch import PowerConfig, arch_from_dict, load_target
from nfc.cli import main
from nfc.errors import TargetError
from nfc.sim.events import Events
from nfc.sim.power import (
    COMPONENTS,
    DEFAULT_DUTY,
    PUBLISHED,
    PowerModel,
    calibration_duty,
    calibration_events,
)

PARTS = ("static", "mac", "mapper", "alu", "fifo", "router", "dram", "config")


def _raw(name: str) -> dict:
    return tomllib.loads(resources.files("nfc").joinpath("targets", f"{name}.toml").read_text())


@pytest.mark.parametrize(
    "name, watts, gops, gops_tol",
    [("virtex6", 10.0, 147.0, 0.02), ("asic45", 0.6, 300.0, 0.03)],
)
def test_calibration_point_reproduces_the_published_figures(name, watts, gops, gops_tol):
    arch = load_target(name)
    events, ops = calibration_events(arch)
    s = PowerModel(arch).summary(events, ops)
    assert s["seconds"] == pytest.approx(1.0)
    assert s["watts"] == pytest.approx(watts, rel=0.02)
    assert s["gops"] == pytest.approx(gops, rel=gops_tol)
    assert s["gops_per_w"] == pytest.approx(gops / watts, rel=0.03)
    assert (s["gops"], s["watts"]) == pytest.approx(PUBLISHED[name], rel=0.03)


def test_asic_efficiency_is_neuflows_claim():
    arch = load_target("asic45")
    s = PowerModel(arch).summary(*calibration_events(arch))
    assert s["gops_per_w"] == pytest.approx(500, rel=0.03)  # 300 GOPS / 0.6 W


def test_calibration_workload_is_what_the_docs_say():
    v = load_target("virtex6")
    assert calibration_duty(v) == pytest.approx(147 / 163.2)
    assert calibration_duty(load_target("asic45")) == pytest.approx(300 / 326.4)
    assert calibration_duty(load_target("tiny")) == DEFAULT_DUTY
    e, ops = calibration_events(v)
    busy = round(147 / 163.2 * 200e6)
    assert e.cycles == 200_000_000
    assert (e.macs, e.mapper_ops, e.alu_ops, e.fifo_words) == (400 * busy, 4 * busy, 4 * busy, 4 * busy)
    assert (e.dram_bytes_read, e.dram_bytes_written) == (10 * busy, 2 * busy)  # 5 + 1 streams of 2 B
    assert e.router_hops == 15 * busy  # 6 streams x 2 hops + 3 chain links
    assert ops == 2 * (e.macs + e.mapper_ops + e.alu_ops)
    # tiny's shared 0.4 GB/s caps its 3 + 1 streams (0.72 GB/s at duty 0.9)
    t = calibration_events(load_target("tiny"))[0]
    assert t.dram_bytes_read + t.dram_bytes_written == pytest.approx(0.4e9, rel=1e-6)
    assert t.dram_bytes_read == pytest.approx(3 * t.dram_bytes_written, rel=1e-6)
    with pytest.raises(ValueError, match="duty must be between 0 and 1"):
        calibration_events(v, duty=1.5)


@pytest.mark.parametrize("name", ["virtex6", "asic45", "tiny"])
def test_energy_is_linear_and_additive(name):
    model = PowerModel(load_target(name))
    a = Events(1000, 50_000, 300, 200, 100, 900, 4096, 1024, 40)
    b = Events(7, 0, 11, 0, 3, 2, 0, 64, 1)
    ea, eb, eab = model.energy(a), model.energy(b), model.energy(a + b)
    assert set(ea) == {*PARTS, "total"}
    for k in ea:
        assert eab[k] == pytest.approx(ea[k] + eb[k], rel=1e-12, abs=1e-30)
    assert ea["total"] == pytest.approx(sum(ea[k] for k in PARTS), rel=1e-12)
    doubled = Events(*(2 * v for v in a.as_dict().values()))
    assert model.energy(doubled)["total"] == pytest.approx(2 * ea["total"], rel=1e-12)


def test_each_component_charges_its_own_events():
    arch = load_target("asic45")
    model, p = PowerModel(arch), arch.power
    for comp, (count, coeff) in COMPONENTS.items():
        fields = ["dram_bytes_read", "dram_bytes_written"] if count == "dram_bytes" else [count]
        for f in fields:
            e = model.energy(Events(**{f: 1_000_000}))
            assert e[comp] == pytest.approx(1e6 * getattr(p, coeff) * 1e-12)
            assert e["total"] == pytest.approx(e[comp])
            assert all(v == 0 for k, v in e.items() if k not in (comp, "total"))


def test_zero_events_cost_nothing_and_idle_cycles_cost_static_power_only():
    arch = load_target("virtex6")
    model = PowerModel(arch)
    assert model.energy(Events())["total"] == 0
    s = model.summary(Events(), 0)
    assert s["seconds"] == s["joules"] == s["watts"] == s["gops"] == s["gops_per_w"] == 0.0
    idle = Events(cycles=round(arch.clock_hz / 4))  # a quarter of a second, nothing happening
    e = model.energy(idle)
    assert e["static"] == pytest.approx(arch.power.static_w * 0.25)
    assert e["total"] == e["static"]
    s = model.summary(idle, 0)
    assert s["watts"] == pytest.approx(arch.power.static_w)
    assert s["gops"] == 0.0 and s["gops_per_w"] == 0.0


def test_more_dram_traffic_costs_more():
    model = PowerModel(load_target("virtex6"))
    base = Events(cycles=1_000_000, macs=10**8, dram_bytes_read=10**6, dram_bytes_written=10**5)
    more_read = dataclasses.replace(base, dram_bytes_read=2 * 10**6)
    more_write = dataclasses.replace(base, dram_bytes_written=2 * 10**5)
    for more in (more_read, more_write):
        assert model.energy(more)["dram"] > model.energy(base)["dram"]
        assert model.summary(more, 1)["watts"] > model.summary(base, 1)["watts"]


def test_summary_is_plain_json():
    arch = load_target("tiny")
    s = PowerModel(arch).summary(*calibration_events(arch))
    doc = json.loads(json.dumps(s))
    assert doc == s
    assert set(doc["energy_j"]) == {*PARTS, "total"}
    assert all(type(v) is float for v in doc["energy_j"].values())
    assert doc["watts_by_component"]["total"] == pytest.approx(doc["watts"])


def test_every_shipped_target_has_a_power_section():
    for name in ("virtex6", "asic45", "tiny"):
        p = load_target(name).power
        assert isinstance(p, PowerConfig)
        assert p.static_w > 0 and all(getattr(p, c) > 0 for _, c in COMPONENTS.values())


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "pj_per_mac",
            -1.0,
            "bad.toml: power.pj_per_mac must be between 0 and 1000000 "
            "(pJ per convolver multiply-accumulate), not -1.0",
        ),
        ("static_w", "ten", "bad.toml: power.static_w must be a number, not 'ten'"),
        ("pj_per_dram_byte", True, "bad.toml: power.pj_per_dram_byte must be a number, not True"),
        (
            "static_w",
            5000,
            "bad.toml: power.static_w must be between 0 and 1000 (W drawn whether busy or not: leakage, "
            "clock trees, memory interface and DRAM idle), not 5000",
        ),
    ],
)
def test_bad_power_values_name_the_field(key, value, message):
    data = _raw("virtex6")
    data["power"][key] = value
    with pytest.raises(TargetError) as err:
        arch_from_dict(data, "bad.toml")
    assert str(err.value) == message


def test_missing_or_unknown_power_keys():
    data = _raw("asic45")
    del data["power"]["pj_per_router_hop"]
    with pytest.raises(TargetError) as err:
        arch_from_dict(data, "bad.toml")
    assert (
        str(err.value)
        == "bad.toml: missing key power.pj_per_router_hop (pJ per word crossing one router link)"
    )
    data = _raw("asic45")
    data["power"]["pj_per_flop"] = 1.0
    with pytest.raises(
        TargetError, match=r"unknown key power\.pj_per_flop; the keys of \[power\] are: static_w"
    ):
        arch_from_dict(data, "bad.toml")
    data = _raw("tiny")
    del data["power"]
    with pytest.raises(TargetError, match=r"^bad\.toml: missing section \[power\]$"):
        arch_from_dict(data, "bad.toml")


def test_power_section_in_to_dict_and_cli_json(capsys):
    assert load_target("asic45").to_dict()["power"]["pj_per_dram_byte"] == 40.0
    assert main(["targets", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for d in doc:
        assert set(d["power"]) == {f.name for f in dataclasses.fields(PowerConfig)}
    assert doc[0]["name"] == "virtex6" and doc[0]["power"]["static_w"] == 4.0

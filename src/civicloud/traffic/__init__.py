"""Traffic: detector counts crunched into signal timing plans, proven in microsimulation.

A traffic bureau loads its road network (a SUMO network file, which netconvert makes from
OpenStreetMap, OpenDRIVE and other formats) and its turning-movement counts, and gets fixed-time
plans that keep the network's phase structure and least HCM control delay, in SUMO's format and
as timing sheets. See docs/modules/traffic.md.

``MODULE`` is Traffic's one declaration of everything it brings to an installation.
"""

from pathlib import Path

from civicloud.core.i18n import N_
from civicloud.core.modules import HomeCard, Job, Listener, Module, NavEntry
from civicloud.core.permissions import RoleSpec
from civicloud.traffic.settings import TrafficSettings

_HERE = Path(__file__).resolve().parent

MODULE = Module(
    name="traffic",
    title=N_("Traffic"),
    permissions={
        "traffic.network.read": N_("See road networks, counts and signal plans"),
        "traffic.network.admin": N_("Load road networks and counts"),
        "traffic.plan.approve": N_("Approve and issue signal plans"),
    },
    roles=(
        RoleSpec(
            "traffic_viewer",
            "交通只读用户",
            "Traffic viewer",
            ("core.tenant.read", "traffic.network.read"),
        ),
        RoleSpec(
            "traffic_engineer",
            "交通信号工程师",
            "Traffic signal engineer",
            ("core.tenant.read", "traffic.*"),
        ),
    ),
    models=("civicloud.traffic.models",),
    settings=TrafficSettings,
    context="civicloud.traffic.context:build",
    cli="civicloud.traffic.cli:traffic_app",
    api="civicloud.traffic.api:router",
    pages="civicloud.traffic.web:router",
    templates=_HERE / "templates",
    locales=_HERE / "locales",
    static=_HERE / "static",
    stylesheets=("traffic.css",),
    labels={"network_id": N_("The road network")},
    nav=(NavEntry("traffic", "/console/traffic", N_("Traffic"), permission="traffic.*"),),
    errors="civicloud.traffic.errors",
    home=HomeCard(
        title=N_("Traffic and transport"),
        summary=N_(
            "Signal timing plans from detector counts, kept to each junction's phase structure."
        ),
        items=(N_("Webster and HCM delay"), N_("SUMO networks and plans")),
    ),
    migrations=_HERE / "migrations",
    demo="civicloud.traffic.demo:seed",
    listeners=(
        Listener(
            "traffic.counts",
            N_("Detector counts over MQTT"),
            "civicloud.traffic.listener:start",
        ),
    ),
    jobs=(
        Job(
            "traffic.flush_counts",
            N_("Keep the counts received over MQTT"),
            "civicloud.traffic.jobs:flush_counts",
            every_seconds=60.0,
        ),
        Job(
            "traffic.compact_counts",
            N_("Merge the small files of kept counts"),
            "civicloud.traffic.jobs:compact_counts",
            every_seconds=3600.0,
        ),
        Job(
            "traffic.evaluate_plans",
            N_("Evaluate stored signal plans in SUMO"),
            "civicloud.traffic.jobs:evaluate_plans",
            every_seconds=10.0,
        ),
    ),
)

__all__ = ["MODULE"]

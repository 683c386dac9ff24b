"""A throwaway module: the smallest module on the contract, with one of everything a module
brings (a table and its migration, a route, a page, a navigation entry, a job, a listener, a
command, a catalog, a stylesheet, a home card, demo seeding), so that a test can check that the
composition root picks each of them up from the declaration alone."""

from pathlib import Path

from pydantic import BaseModel

from civicloud.core.i18n import N_
from civicloud.core.modules import HomeCard, Job, Listener, ListenerOption, Module, NavEntry
from civicloud.core.permissions import RoleSpec

_HERE = Path(__file__).resolve().parent
READ = "throwaway.item.read"


class ThrowawaySettings(BaseModel):
    """``CIVICLOUD_THROWAWAY__*``."""

    greeting: str = "hello"
    echo_port: int = 0


MODULE = Module(
    name="throwaway",
    title=N_("Throwaway"),
    permissions={READ: N_("See throwaway items")},
    roles=(RoleSpec("throwaway_reader", "临时读者", "Throwaway reader", (READ,)),),
    models=("tests.fakes.throwaway.models",),
    settings=ThrowawaySettings,
    context="tests.fakes.throwaway.service:build_context",
    api="tests.fakes.throwaway.api:router",
    pages="tests.fakes.throwaway.web:router",
    cli="tests.fakes.throwaway.cli:app",
    templates=_HERE / "templates",
    locales=_HERE / "locales",
    static=_HERE / "static",
    stylesheets=("throwaway.css",),
    labels={"item_id": N_("The throwaway item")},
    errors="tests.fakes.throwaway.errors",
    nav=(NavEntry("throwaway", "/console/throwaway", N_("Throwaway"), permission="throwaway.*"),),
    home=HomeCard(
        title=N_("Throwaway service"),
        summary=N_("A service that exists for one test."),
        icon="throwaway/icon.svg",
    ),
    jobs=(
        Job(
            "throwaway.finish_items",
            N_("Finish throwaway items"),
            "tests.fakes.throwaway.service:finish_items",
            every_seconds=1.0,
        ),
    ),
    listeners=(
        Listener(
            "throwaway.echo",
            N_("Throwaway echo"),
            "tests.fakes.listeners:start_echo",
            options=(ListenerOption("--throwaway-port", "echo_port", "The echo server's port."),),
        ),
    ),
    demo="tests.fakes.throwaway.service:seed",
    migrations=_HERE / "migrations",
)

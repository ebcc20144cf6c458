"""systemd-resolved registration: the commands, and nothing done where it does not run."""

import asyncio

from shoal_names_dns import resolved


def test_register_commands_route_only_the_shoal_domain():
    assert resolved.register_commands("shoal0", "100.64.0.2", 53) == [
        ["resolvectl", "dns", "shoal0", "100.64.0.2"],
        ["resolvectl", "domain", "shoal0", "~shoal"]]
    assert resolved.register_commands("shoal0", "100.64.0.2", 5353)[0][-1] == "100.64.0.2:5353"


def test_register_reports_one_line_on_failure():
    calls = []

    async def runner(argv):
        calls.append(argv)
        return (1, "Failed to set DNS configuration: Link shoal0 not known") \
            if argv[1] == "domain" else (0, "")

    err = asyncio.run(resolved.register("shoal0", "100.64.0.2", 53, runner))
    assert len(calls) == 2 and err.startswith("resolvectl domain shoal0 ~shoal: Failed")


def test_not_running_without_resolved(tmp_path):
    assert not resolved.resolved_running(str(tmp_path))

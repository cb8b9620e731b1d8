"""README's "One machine" and "Several machines" say exactly what tests/deployed/ runs."""

from __future__ import annotations

from tests.deployed.readme import ONE_MACHINE, SEVERAL_MACHINES, section_commands


def test_one_machine_in_readme_is_what_the_deployed_test_runs():
    assert section_commands("One machine") == ONE_MACHINE


def test_several_machines_in_readme_is_what_the_deployed_test_runs():
    assert section_commands("Several machines") == SEVERAL_MACHINES

"""One `ray start` cluster and one `rayfit serve` for the live service tests of this package."""

from __future__ import annotations

import pytest

from tests.service.live import Server, ray_head, write_digits_csv


@pytest.fixture(scope="package")
def cluster():
    """(GCS address, env, head process) of a Ray cluster of these tests' own."""
    with ray_head() as head:
        yield head


@pytest.fixture(scope="package")
def server(cluster, tmp_path_factory):
    """`rayfit serve` on that cluster, in a folder holding digits.csv."""
    address, env, _ = cluster
    folder = tmp_path_factory.mktemp("service")
    write_digits_csv(folder / "digits.csv")
    server = Server(folder, env, address).start()
    yield server
    server.stop()

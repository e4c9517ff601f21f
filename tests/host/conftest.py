"""The testinfra spec of a healthy app host, runnable without fab:

    pytest tests/host --hosts=ssh://web1,ssh://web2 \
        --ssh-config=.railsfab/sandbox/sandbox/ssh_config

What "healthy" means comes from the inventory (hosts.yaml, or $RAILSFAB_HOSTS; stage from
$RAILSFAB_STAGE): paths, deploy user, workers, RAILS_ENV.
"""

from __future__ import annotations

import pytest

from railsfab import appserver, inventory
from railsfab.paths import Paths


@pytest.fixture(scope="session")
def inv():
    return inventory.load()


@pytest.fixture(scope="session")
def app(inv):
    return inv.stage.app


@pytest.fixture(scope="session")
def paths(app):
    return Paths.of(app)


@pytest.fixture(scope="session")
def server(app, paths):
    return appserver.for_app(app, paths)

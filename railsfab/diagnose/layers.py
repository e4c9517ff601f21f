"""The diagnosis layers, one object each, in the order a request crosses them.

Each layer names its checks in the order they are tried (see `base.Layer`): the first fault
found is the layer's verdict, exactly as one if/elif chain would decide. The layers live
in `front` (host, nginx, site config, socket), `app` (release, app server, Rails app,
assets), `backing` (database) and `cloud` (S3, load balancer, security groups: read by the
controller from AWS); their evidence is read in `evidence`.
"""

from __future__ import annotations

from railsfab.diagnose.app import AppServer, RailsApp, Release
from railsfab.diagnose.assets import Assets
from railsfab.diagnose.backing import Database
from railsfab.diagnose.base import Layer
from railsfab.diagnose.cloud import S3, LoadBalancer, SecurityGroups
from railsfab.diagnose.front import Host, Nginx, SiteConfig, Socket

LAYERS = (
    "network",
    "host",
    "nginx",
    "site config",
    "socket",
    "release",
    "app server",
    "Rails app",
    "assets",
    "database",
    "S3",
    "load balancer",
    "security groups",
)


class Network(Layer):
    """The probe's data exists, so SSH reached the host (tasks/check.py reports failures)."""

    name = "network"

    def healthy(self, d, ctx):
        return "ssh reachable"


ALL: tuple[Layer, ...] = (Network(), Host(), Nginx(), SiteConfig(), Socket(), Release(),
                          AppServer(), RailsApp(), Assets(), Database(), S3(), LoadBalancer(),
                          SecurityGroups())

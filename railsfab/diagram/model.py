"""The diagram's model: nodes, groups and edges, built from hosts.yaml and live state.

Pure: no AWS, no files. Each part of the picture (network, clients and load balancer, S3,
database, hosts) has its own builder; they append to one Model in drawing order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from railsfab import appserver
from railsfab.inventory import App, Host, Inventory, Stage
from railsfab.paths import Paths

# Target health as the target group reports it -> colour. Anything else (initial,
# draining, unused, not registered, unknown) is grey: neither good nor known bad.
HEALTH_COLOURS = {"healthy": "#2E7D32", "unhealthy": "#C62828", "unavailable": "#C62828"}
GREY = "#757575"


def health_colour(state: str | None) -> str:
    return HEALTH_COLOURS.get(state or "", GREY)


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # client alb target_group target nginx app_server db database endpoint bucket host
    label: str
    group: str | None = None  # id of the innermost Group holding it
    health: str | None = None  # targets only: the target group's state, or "unknown"
    host: str | None = None  # the hosts.yaml host it runs on


@dataclass(frozen=True)
class Group:
    id: str
    kind: str  # vpc security_group host
    label: str
    parent: str | None = None
    health: str | None = None  # host groups: their target's health


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    health: str | None = None  # target group -> target: coloured like the target


@dataclass
class Model:
    title: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def children(self, group_id: str | None) -> tuple[list[Group], list[Node]]:
        return ([g for g in self.groups if g.parent == group_id],
                [n for n in self.nodes if n.group == group_id])


_VPC = "vpc"


@dataclass(frozen=True)
class _Known:
    """What the parts of the picture share: the stage, and how much of it AWS confirmed."""

    inv: Inventory
    out: dict  # the stack's outputs; {} when there is no stack or AWS was not reached
    live: bool  # AWS was reached
    managed: bool  # railsfab's stack: ALB, SGs, endpoint, bucket
    has_lb: bool

    @property
    def provisioned(self) -> bool:
        return bool(self.out)

    @property
    def suffix(self) -> str:
        if not self.live:
            return "state unknown"
        if self.managed and not self.provisioned:
            return "not provisioned"
        return ""

    def tag(self, label: str) -> str:
        """Marks what the stack would hold when it could not be read: drawn, but unconfirmed."""
        return f"{label}\n({self.suffix})" if self.suffix else label


def model(inv: Inventory, outputs: dict | None, health: dict | None) -> Model:
    """The stage's architecture.

    outputs: the stack's outputs ({} when there is no stack; None when AWS was not reached).
    health:  target state per host name, as the target group reports it (None: unknown).
    """
    a = inv.stage.aws
    k = _Known(inv, outputs or {}, live=outputs is not None, managed=bool(a.stack_name),
               has_lb=bool(a.stack_name) or bool(a.target_group_arn))
    m = Model(title=f"{inv.stage.app.name} — stage {inv.stage_name}", notes=_notes(k))
    alb_sg, app_sg = _network(m, k)
    _clients_and_alb(m, k, alb_sg)
    s3_in = _s3(m, k)
    db_target = _database(m, inv.stage)
    for h in inv.stage.hosts:
        if "web" in h.roles:
            _web_host(m, k, h, _target_state(k, h, health), app_sg, db_target, s3_in)
        elif "db" not in h.roles:  # db hosts are drawn as the database
            m.nodes.append(Node(f"host-{h.name}", "host", f"{h.name} {h.address}",
                                group=_VPC, host=h.name))
    return m


def _notes(k: _Known) -> list[str]:
    if not k.live:
        return ["AWS not reached: drawn from hosts.yaml alone, health unknown"]
    if k.managed and not k.provisioned:
        return [f"stack {k.inv.stage.aws.stack_name} not provisioned (`fab aws.provision`): "
                "drawn from hosts.yaml alone"]
    return []


def _network(m: Model, k: _Known) -> tuple[str, str]:
    """The VPC and, on a managed stage, its two security groups: (ALB's, app's) group ids."""
    st, a, out = k.inv.stage, k.inv.stage.aws, k.out
    where = f"sandbox {st.sandbox.subnet}" if st.sandbox else a.region
    m.groups.append(Group(_VPC, "vpc", f"VPC {a.vpc_id or ''} ({where})".replace("  ", " ")))
    if not k.managed:
        return _VPC, _VPC
    m.groups.append(Group("sg-alb", "security_group", k.tag(
        f"ALB security group {out.get('AlbSecurityGroupId', '')}".rstrip()
        + ("\nHTTPS :443, HTTP :80 from anywhere" if a.certificate_arn or a.certificate_domain
           else "\nHTTP :80 from anywhere")),
        parent=_VPC))
    ssh = f", SSH from {a.admin_cidr}" if a.admin_cidr else ""
    m.groups.append(Group("sg-app", "security_group", k.tag(
        f"app security group {out.get('AppSecurityGroupId', '')}".rstrip()
        + f"\nHTTP :80 from the ALB only{ssh}"), parent=_VPC))
    return "sg-alb", "sg-app"


def _clients_and_alb(m: Model, k: _Known, alb_sg: str) -> None:
    """The clients and, when the stage has one, the load balancer and its target group."""
    from railsfab.stack import names  # pure; the module itself pulls in boto3

    m.nodes.append(Node("client", "client", "clients (internet)"))
    if not k.has_lb:
        return
    if k.managed:
        named = names(k.inv)
        dns = k.out.get("AlbDnsName")
        m.nodes.append(Node("alb", "alb",
                            k.tag(f"ALB {named['alb']}" + (f"\n{dns}" if dns else "")),
                            group=alb_sg))
        tg_name = named["target_group"]
    else:
        m.nodes.append(Node("alb", "alb", "ALB\n(not managed by railsfab)", group=_VPC))
        tg_name = _arn_name(k.inv.stage.aws.target_group_arn)
    front = k.out.get("_front") or _front_of(k.inv.stage)  # the stack's, when it was read
    m.nodes.append(Node("tg", "target_group", k.tag(
        f"target group {tg_name}\nHTTP :80, health check {front['health_path']}"), group=_VPC))
    https = any(x.startswith("HTTPS") for x in front["listeners"])
    m.edges.append(Edge("client", "alb", "HTTPS :443" + (", HTTP :80" if len(
        front["listeners"]) > 1 else "") if https else "HTTP :80"))
    m.edges.append(Edge("alb", "tg", "listeners " + "; ".join(front["listeners"])))


def _front_of(st: Stage) -> dict:
    """What `fab aws.provision` makes of the stage: HTTPS at the ALB with a redirect from :80
    when it has a certificate."""
    a = st.aws
    listeners = (["HTTPS :443 → forward", "HTTP :80 → redirect to HTTPS :443"]
                 if a.certificate_arn or a.certificate_domain else ["HTTP :80 → forward"])
    return {"health_path": st.app.health_path, "listeners": listeners}


def _s3(m: Model, k: _Known) -> str | None:
    """The bucket (behind its gateway endpoint on a managed stage): where the app's S3
    traffic goes first, or None without a bucket."""
    bucket = k.out.get("BucketName") or k.inv.stage.aws.bucket
    if not bucket:
        return None
    m.nodes.append(Node("bucket", "bucket", k.tag(f"S3 bucket\n{bucket}")))
    if not k.managed:
        return "bucket"
    vpce = k.out.get("VpcEndpointId")
    m.nodes.append(Node("endpoint", "endpoint", k.tag(
        "S3 gateway endpoint" + (f"\n{vpce}" if vpce else "")), group=_VPC))
    m.edges.append(Edge("endpoint", "bucket", "S3 via gateway endpoint"))
    return "endpoint"


def _database(m: Model, st: Stage) -> str | None:
    """The db hosts, and the database the app uses: the node its database edges go to."""
    db_cfg = st.app.database
    db_target = None
    for h in st.hosts:
        if "db" in h.roles:
            # the sandbox's db host runs MariaDB for mysql2, PostgreSQL for postgresql
            server = "PostgreSQL" if db_cfg and db_cfg.adapter == "postgresql" else "MariaDB"
            what = f"\n{server} {db_cfg.name}" if db_cfg else f"\n{server}"
            m.nodes.append(Node(f"db-{h.name}", "db", f"{h.name} {h.address}{what}",
                                group=_VPC, host=h.name))
            if db_cfg and db_cfg.host in (h.address, h.name):
                db_target = f"db-{h.name}"
    if db_cfg and db_target is None:  # RDS or another host outside this stage
        db_target = "database"
        m.nodes.append(Node("database", "database",
                            f"database {db_cfg.host}:{db_cfg.port}\n{db_cfg.name}", group=_VPC))
    return db_target


def _target_state(k: _Known, h: Host, health: dict | None) -> str | None:
    """The web host's state as a target; None when no load balancer sends to it."""
    if not k.has_lb:
        return None
    return "unknown" if health is None else health.get(h.name, "not registered")


def _web_host(m: Model, k: _Known, h: Host, state: str | None, app_sg: str,
              db_target: str | None, s3_in: str | None) -> None:
    """One web host as a group: its target, nginx (when in front) and the app server,
    wired from the load balancer (or the clients) through to the database and S3."""
    app = k.inv.stage.app
    paths = Paths.of(app)
    port = app.http_port
    shown = {"unknown": "health unknown"}.get(state or "", state)
    label = f"{h.name} {h.address}" + (f" — {shown}" if shown else "")
    grp = f"host-{h.name}"
    m.groups.append(Group(grp, "host", f"{h.name} (EC2)", parent=app_sg, health=state))
    target, nginx, srv = f"target-{h.name}", f"nginx-{h.name}", f"app-{h.name}"
    m.nodes.append(Node(target, "target", label, group=grp, health=state, host=h.name))
    m.nodes.append(Node(srv, "app_server",
                        _server_label(app) + ("" if app.nginx else f"\nlistening on :{port}"),
                        group=grp, host=h.name))
    if k.has_lb:
        m.edges.append(Edge("tg", target, f"HTTP :{port}", health=state))
    else:
        m.edges.append(Edge("client", target, f"HTTP :{port}"))
    if app.nginx:
        m.nodes.append(Node(nginx, "nginx", "nginx :80", group=grp, host=h.name))
        m.edges.append(Edge(target, nginx, ""))
        m.edges.append(Edge(nginx, srv, f"unix:{paths.socket}"))
    else:  # the app server alone on its port (the seed's first step)
        m.edges.append(Edge(target, srv, f"tcp :{port}"))
    if db_target:
        m.edges.append(Edge(srv, db_target, f"{app.database.title} :{app.database.port}"))
    if s3_in:
        m.edges.append(Edge(srv, s3_in, "S3 API (HTTPS)"))


def _server_label(app: App) -> str:
    """The app server's box: which server, its unit, and how much it runs at once."""
    server = appserver.for_app(app)
    return f"{server.title}\n{server.paths.unit_name}\n{server.capacity()}"


def _arn_name(arn: str | None) -> str:
    """`.../targetgroup/NAME/ID` -> NAME."""
    parts = (arn or "").split("/")
    return parts[1] if len(parts) >= 3 else (arn or "")

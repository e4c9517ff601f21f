"""hosts.yaml's fleet settings: `hosts_from` (where a stage's web hosts come from in AWS)
and the checks a stage with it must pass, before any AWS call or SSH.

    hosts_from: {tag: {Role: web}}              # running instances with all these tags
    hosts_from: {auto_scaling_group: shop-web}  # the group's InService instances
    hosts_from: {target_group: stack}           # the stack's target group's targets (or an ARN)

railsfab.fleet reads them at the start of each command; the stage's listed hosts (the db,
or a web host that migrates) are combined with them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SOURCES = ("tag", "auto_scaling_group", "target_group")
EXAMPLE = "e.g. hosts_from: {tag: {Role: web}}"
# What each shape admits, for the one-line error (merged into inventory.PATTERNS).
PATTERNS = {
    r"^[A-Za-z0-9 _.:/=+@-]{1,128}$": "an EC2 tag key (letters, digits, spaces and _.:/=+-@)",
    r"^[A-Za-z0-9 _.:/=+@*?-]{0,256}$": "an EC2 tag value (letters, digits, spaces and "
                                        "_.:/=+-@, * and ? as wildcards)",
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$": "an Auto Scaling group name (letters, digits, "
                                           "'.', '_' and '-')",
    r"^(stack|arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/"
    r"[A-Za-z0-9-]{1,32}/[0-9a-f]{16})$": "'stack' (the stack's target group) or a target "
                                          "group ARN",
}
_P = list(PATTERNS)
TagKey = Annotated[str, Field(pattern=_P[0])]
TagValue = Annotated[str, Field(pattern=_P[1])]
GroupName = Annotated[str, Field(pattern=_P[2])]
TargetGroupRef = Annotated[str, Field(pattern=_P[3])]


class HostsFrom(BaseModel):
    """Where the stage's web hosts come from: exactly one source, read with boto3."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    tag: dict[TagKey, TagValue] | None = None  # every tag must match
    auto_scaling_group: GroupName | None = None
    target_group: TargetGroupRef | None = None
    # The address railsfab connects to: the private IP (from inside the VPC: a bastion, a
    # CI runner, a VPN) or the public one.
    address: Literal["private", "public"] = "private"
    # Which found instance may run the migrations (and receive every secret for it) when no
    # listed host has role migrate: the oldest carrying all these tags; never just any.
    migrate_tag: dict[TagKey, TagValue] = Field(
        default_factory=lambda: {"railsfab:migrate": "true"})

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping naming one of {', '.join(SOURCES)} "
                             f"({EXAMPLE}), got {data!r}")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> HostsFrom:
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if not given:
            raise ValueError(f"say where the web hosts come from: one of {', '.join(SOURCES)} "
                             f"({EXAMPLE})")
        if len(given) > 1:
            raise ValueError(f"one source of hosts, not {len(given)} ({' and '.join(given)}): "
                             f"keep one ({EXAMPLE})")
        if self.tag == {}:
            raise ValueError(f"tag: give at least one KEY: VALUE ({EXAMPLE})")
        if self.migrate_tag == {}:
            raise ValueError("migrate_tag: give at least one KEY: VALUE (e.g. "
                             "{railsfab:migrate: 'true'}): any instance would migrate")
        return self

    def migrate_tag_said(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.migrate_tag.items())

    @property
    def source(self) -> str:
        return next(k for k in SOURCES if getattr(self, k) is not None)

    def describe(self) -> str:
        """Where the list comes from, as the progress line says it."""
        if self.tag is not None:
            return "tag " + ", ".join(f"{k}={v}" for k, v in self.tag.items())
        if self.auto_scaling_group:
            return f"Auto Scaling group {self.auto_scaling_group}"
        return "target group " + ("of the stack" if self.target_group == "stack"
                                  else self.target_group.rsplit("/", 2)[-2])


def check_stage(stage: Any) -> None:
    """A stage's fleet settings fit together (raises ValueError: one line, with the fix)."""
    if not stage.hosts and stage.hosts_from is None:
        raise ValueError(f"hosts: list the hosts, or read the web hosts from AWS with "
                         f"hosts_from ({EXAMPLE})")
    hf, aws = stage.hosts_from, stage.aws
    if hf is not None and hf.target_group == "stack" and not (aws.stack_name
                                                              or aws.target_group_arn):
        raise ValueError("hosts_from.target_group is 'stack' but the stage has no "
                         "aws.stack_name (or aws.target_group_arn): name the stack, or give "
                         "the target group's ARN")
    if stage.app.artifact == "s3" and not aws.bucket:
        raise ValueError("app.artifact is s3 but the stage has no aws.bucket: name the "
                         "stage's bucket (aws.bucket), or use artifact: upload")
    sandbox = stage.sandbox
    if sandbox is None:
        return
    names = [h.name for h in stage.hosts] + [i.name for i in sandbox.instances]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"sandbox.instances: names must differ from each other and from the "
                         f"stage's hosts; repeated: {', '.join(dupes)}")

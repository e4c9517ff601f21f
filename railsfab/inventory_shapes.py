"""The shapes of hosts.yaml's strings: each one that reaches a shell, a unit, nginx, Ruby or
YAML on a host is matched against a pattern, and the one-line error says what the pattern
admits (`PATTERNS`, read by inventory_errors). Also the directories deploy_to may not be."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from railsfab.inventory_fleet import PATTERNS as FLEET_PATTERNS

# Every string that reaches a shell, a unit, nginx, Ruby or YAML on a host has a shape; what
# each shape admits is said in the error (inventory_errors.PATTERNS).
PATTERNS: dict[str, str] = {}


def _text(pattern: str, says: str) -> Any:
    PATTERNS[pattern] = says
    return Annotated[str, Field(pattern=pattern)]


Name = _text(r"^[a-z][a-z0-9-]{0,30}$", "a valid name (lowercase letters, digits and '-', "
             "starting with a letter)")
User = _text(r"^[a-z_][a-z0-9_-]{0,31}$", "a Unix user name (lowercase letters, digits, '_' "
             "and '-')")
HostPath = _text(r"^/[A-Za-z0-9._/-]*$", "an absolute path of letters, digits, '.', '_', '-' "
                 "and '/'")
RailsEnv = _text(r"^[a-z][a-z0-9_]*$", "an environment name (lowercase letters, digits, '_')")
Size = _text(r"^[0-9]+[kKmMgG]?$", "a size as nginx writes it (25m, 512k, 1g)")
Package = _text(r"^[a-z0-9][a-z0-9+.-]+$", "a Debian package name")
Address = _text(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", "a host name or an IP address")
DbIdent = _text(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", "a database identifier (letters, digits, "
                "'_')")
GitRef = _text(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$", "a git branch, tag or commit")
Url = _text(r"^https?://[A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/-]*)?$", "an http(s) URL")
Region = _text(r"^[a-z]{2}(-[a-z]+)+-[0-9]$", "an AWS region (e.g. ap-northeast-1)")
Bucket = _text(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "an S3 bucket name")
StackName = _text(r"^[A-Za-z][A-Za-z0-9-]{0,127}$", "a CloudFormation stack name")
Arn = _text(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:[A-Za-z0-9:/_.-]+$", "an ARN")
Domain = _text(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*"
               r"[A-Za-z0-9])?)+$", "a domain name")
Word = _text(r"^[A-Za-z0-9-]+$", "letters, digits and '-'")
InstanceId = _text(r"^i-[0-9a-f]{8,17}$", "an EC2 instance id (i-...)")
EnvName = _text(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", "an environment variable name (letters, "
                "digits, '_')")
EnvValue = _text(r"^[^'\x00-\x1f\x7f]*$", "a value without single quotes, newlines or control "
                 "characters")
PATTERNS.update(FLEET_PATTERNS)  # hosts_from's shapes
# deploy_to may not be, or be inside, these (after normalising): the app user would own
# them. /var and /home themselves are refused, their app folders (/var/www/x, /home/u/x) not.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
               "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var/lib/dpkg",
               "/var/lib/apt", "/var/lib/systemd", "/var/log", "/var/cache", "/var/spool",
               "/var/tmp", "/var/run", "/var/mail", "/var/backups", "/var/lib/railsfab")
TOP_LEVEL_ONLY = ("/", "/var", "/var/lib", "/home", "/srv", "/opt", "/mnt", "/media")
# S3's rules for bucket names (they also keep a name inert in a policy document).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Model(BaseModel):
    """hosts.yaml's sections: unknown keys refused, values frozen, strings stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

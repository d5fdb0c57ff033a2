"""The Alibaba Cloud account this machine acts as: its credentials (environment, CLI config, INI
file, then ECS role, in that order) and the region its environment binds."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from catalog.config import ENV_REGION, spelled
from catalog.errors import CredentialsError

ENV_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
DEFAULT_METADATA_URL = "http://100.100.100.200"
ROLES_PATH = "/latest/meta-data/ram/security-credentials/"
CLI_CONFIG = "~/.aliyun/config.json"
INI_FILE = "~/.alibabacloud/credentials.ini"


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, with an STS token when temporary; the secret parts never print."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = ""


def resolve_credentials(
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    metadata_url: str | None = None,
    timeout: float = 2.0,
) -> Credentials:
    """The first credentials the chain finds; reads only ``environ`` and files under ``home``."""
    env = os.environ if environ is None else environ
    home_dir = Path.home() if home is None else home
    found = _from_environment(env)
    if found is None:
        try:
            found = _from_cli_config(env, home_dir)
        except _ProfileNotFound as missing:
            found = _ini_instead(env, home_dir, missing)
    if found is None:
        found = _from_ini(env, home_dir)
    if found is None and not _flag(env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED"):
        base = metadata_url or env.get("PAI_CATALOG_ECS_METADATA_URL") or DEFAULT_METADATA_URL
        found = _from_ecs_role(env, base.rstrip("/"), timeout)
    if found is None:
        raise CredentialsError(
            f"No Alibaba Cloud credentials found; set {ENV_ID} and {ENV_SECRET}, "
            f"or add a profile to {CLI_CONFIG} or {_ini_path(env, home_dir)[1]}."
        )
    return found


class _ProfileNotFound(CredentialsError):
    """A file lacks the profile asked for; the CLI config's miss gives the INI file a chance."""


def _ini_instead(env: Mapping[str, str], home: Path, missing: _ProfileNotFound) -> Credentials:
    """ALIBABA_CLOUD_PROFILE names profiles in both files: the INI file's, when the CLI config
    lacks it; in neither file, the CLI config's miss is the error."""
    try:
        found = _from_ini(env, home)
    except _ProfileNotFound:
        found = None
    if found is None:
        raise CredentialsError(str(missing)) from None
    return found


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def _from_environment(env: Mapping[str, str]) -> Credentials | None:
    key_id, secret = env.get(ENV_ID, ""), env.get(ENV_SECRET, "")
    if not key_id and not secret:
        return None
    if not secret or not key_id:
        missing = ENV_SECRET if key_id else ENV_ID
        present = ENV_ID if key_id else ENV_SECRET
        raise CredentialsError(f"{present} is set but {missing} is not; set both or neither.")
    return Credentials(key_id, secret, env.get(ENV_TOKEN) or None, "environment")


def _required(
    entry: Mapping[str, Any], keys: tuple[str, ...], where: str, fix: str = "add it"
) -> list[str]:
    for key in keys:
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            # Never quoted: it may be the secret, misplaced.
            raise CredentialsError(f"{where}: {key} must be a string; {_fixed(fix)}.")
        if not isinstance(value, str) or not value.strip():
            raise CredentialsError(f"{where} has no {key}; {fix}.")
    return [str(entry[key]).strip() for key in keys]


def _fixed(fix: str) -> str:
    """The advice for a malformed value, from the advice for a missing one."""
    return "fix it" if fix == "add it" else fix


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5]) or "none"
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"Cannot read {shown} ({type(exc).__name__}); fix it.") from None


def _cli_profile(env: Mapping[str, str], home: Path) -> tuple[str, dict[str, Any]] | None:
    """The aliyun CLI's profile in use (ALIBABA_CLOUD_PROFILE, else its "current"), with its
    name; None without the CLI's config or a profile chosen in it."""
    path = home / ".aliyun" / "config.json"
    if _flag(env, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED") or not path.is_file():
        return None
    skip = "or set ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true to skip it"
    try:
        data = json.loads(_read(path, CLI_CONFIG))
    except json.JSONDecodeError as exc:
        # The decoder's own message can quote the file's text, which may hold a secret.
        where = f"line {exc.lineno} column {exc.colno}"
        raise CredentialsError(
            f"{CLI_CONFIG} is not valid JSON ({where}); fix it {skip}."
        ) from None
    except RecursionError:
        raise CredentialsError(
            f"{CLI_CONFIG} is not valid JSON (arrays or objects nested too deeply); fix it {skip}."
        ) from None
    except ValueError:  # int("1" * 5000): Python's bound on the digits of a number it reads
        raise CredentialsError(
            f"{CLI_CONFIG} is not valid JSON (a number too long to read); fix it {skip}."
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{CLI_CONFIG} is not a JSON object; fix it {skip}.")
    name = env.get("ALIBABA_CLOUD_PROFILE") or data.get("current")
    if not name:
        return None  # the CLI is installed but no profile was ever chosen
    if not isinstance(name, str):
        raise CredentialsError(
            f'{CLI_CONFIG} has a "current" that is not a profile name; fix it {skip}.'
        )
    listed = data.get("profiles", [])
    if not isinstance(listed, list):
        raise CredentialsError(f'{CLI_CONFIG} has "profiles" that are not a list; fix it {skip}.')
    # Profiles that are not objects with a name string are not the one asked for.
    by_name = {
        p["name"]: p for p in listed if isinstance(p, dict) and isinstance(p.get("name"), str)
    }
    profile = by_name.get(name)
    if profile is None:
        names = list(by_name)
        raise _ProfileNotFound(
            f"Profile {name!r} is not in {CLI_CONFIG} (its profiles: {_names(names)}); "
            "choose one with --profile (ALIBABA_CLOUD_PROFILE)."
        )
    return name, profile


def cli_region(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The ``region_id`` of the aliyun CLI's profile in use, if it names one."""
    env = os.environ if environ is None else environ
    home_dir = Path.home() if home is None else home
    try:
        found = _cli_profile(env, home_dir)
    except _ProfileNotFound as missing:
        # A profile of the INI file has no region; one in neither file is a mistake to say,
        # not a region to go without.
        _ini_instead(env, home_dir, missing)
        return None
    region = found[1].get("region_id") if found else None
    return region.strip() if isinstance(region, str) and region.strip() else None


def _from_cli_config(env: Mapping[str, str], home: Path) -> Credentials | None:
    found = _cli_profile(env, home)
    if found is None:
        return None
    name, profile = found
    where = f"{CLI_CONFIG} (profile {name!r})"
    mode = profile.get("mode")
    if mode == "AK":
        key_id, secret = _required(profile, ("access_key_id", "access_key_secret"), where)
        return Credentials(key_id, secret, None, where)
    if mode == "StsToken":
        keys = ("access_key_id", "access_key_secret", "sts_token")
        key_id, secret, token = _required(profile, keys, where)
        return Credentials(key_id, secret, token, where)
    if mode is not None and not isinstance(mode, str):
        clause = "has a mode that is not a string"
    elif mode:
        clause = f"has mode {mode!r}, which pai-catalog does not support"
    else:
        clause = "has no mode"
    raise CredentialsError(
        f"{where} {clause}; use an AK or StsToken profile, or set {ENV_ID} and {ENV_SECRET}."
    )


def _ini_path(env: Mapping[str, str], home: Path) -> tuple[Path, str, bool]:
    """The INI file, how messages name it, and whether the environment chose it."""
    chosen = env.get("ALIBABA_CLOUD_CREDENTIALS_FILE", "")
    if not chosen:
        return home / ".alibabacloud" / "credentials.ini", INI_FILE, False
    # Expanded by hand: Path.expanduser() would consult the real HOME, not ``home``.
    path = home / chosen[2:] if chosen.startswith("~/") else Path(chosen)
    return path, chosen, True


def _from_ini(env: Mapping[str, str], home: Path) -> Credentials | None:
    path, shown, chosen = _ini_path(env, home)
    if not path.is_file():
        if chosen:
            raise CredentialsError(
                f"ALIBABA_CLOUD_CREDENTIALS_FILE names {shown}, which does not exist; "
                "fix the path or unset it."
            )
        return None
    import configparser  # only for those who keep an INI file

    # No interpolation: a '%' in a secret is data, not a reference.
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(_read(path, shown))
    except configparser.Error as exc:
        # Parser messages quote the offending line, which may hold a secret.
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise CredentialsError(f"{shown} is not a valid INI file{where}; fix it.") from None
    name = env.get("ALIBABA_CLOUD_PROFILE") or "default"
    if not parser.has_section(name):
        raise _ProfileNotFound(
            f"Profile {name!r} is not in {shown} (its profiles: {_names(parser.sections())}); "
            "choose one with --profile (ALIBABA_CLOUD_PROFILE)."
        )
    where = f"{shown} (profile {name!r})"
    section = dict(parser.items(name))
    kind = section.get("type")
    if kind != "access_key":
        clause = f"has type {kind!r}, which pai-catalog does not support" if kind else "has no type"
        raise CredentialsError(
            f"{where} {clause}; use type = access_key with access_key_id and access_key_secret."
        )
    key_id, secret = _required(section, ("access_key_id", "access_key_secret"), where)
    return Credentials(key_id, secret, None, where)


def _from_ecs_role(env: Mapping[str, str], base: str, timeout: float) -> Credentials | None:
    """Credentials of the instance's RAM role, or None when no metadata service answers."""
    import requests  # only here: the rest of the chain must not need it

    session = requests.Session()
    # Proxies and .netrc come from the real environment, and a proxy cannot reach the service.
    session.trust_env = False
    headers: dict[str, str] = {}
    try:
        # IMDSv2: instances that enforce it refuse plain GETs; where it is absent, go without.
        answer = session.put(
            f"{base}/latest/api/token",
            headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "21600"},
            timeout=timeout,
        )
        if answer.status_code == 200 and answer.text.strip():
            headers["X-aliyun-ecs-metadata-token"] = answer.text.strip()
        role = env.get("ALIBABA_CLOUD_ECS_METADATA", "").strip()
        if not role:
            answer = session.get(f"{base}{ROLES_PATH}", headers=headers, timeout=timeout)
            lines = answer.text.split() if answer.status_code == 200 else []
            if not lines:
                return None
            role = lines[0]
        answer = session.get(
            f"{base}{ROLES_PATH}{quote(role, safe='')}", headers=headers, timeout=timeout
        )
    except (requests.ConnectionError, requests.Timeout):
        return None
    except requests.RequestException as exc:
        raise CredentialsError(
            f"Cannot query the ECS metadata service at {base} ({type(exc).__name__}); "
            "fix PAI_CATALOG_ECS_METADATA_URL or set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true."
        ) from None
    finally:
        session.close()
    where = f"ECS RAM role {role!r}"
    fix = "attach the role to the instance or set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true"
    if answer.status_code != 200:
        raise CredentialsError(
            f"The ECS metadata service has no credentials for {where} "
            f"(HTTP {answer.status_code}); {fix}."
        )
    try:
        body = answer.json()
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise CredentialsError(f"The ECS metadata service sent malformed JSON for {where}; {fix}.")
    code = body.get("Code")
    if code != "Success":
        shown = repr(code[:40]) if isinstance(code, str) else "not a string"
        raise CredentialsError(f"The ECS metadata service refused {where} (Code {shown}); {fix}.")
    keys = ("AccessKeyId", "AccessKeySecret", "SecurityToken")
    key_id, secret, token = _required(body, keys, f"The metadata answer for {where}", fix)
    return Credentials(key_id, secret, token, where)


@dataclass(frozen=True)
class BoundRegion:
    """The region a request is bound to when it names none, and where that came from."""

    region: str
    source: str


def default_region() -> BoundRegion | None:
    """The region the environment binds, as the PAI SDK and the aliyun CLI find it:
    PAI_CATALOG_REGION, else ALIBABA_CLOUD_REGION_ID, else the region_id of the aliyun CLI's
    profile in use (ALIBABA_CLOUD_PROFILE, else its current one); None when none does."""
    for name in (ENV_REGION, "ALIBABA_CLOUD_REGION_ID"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return BoundRegion(value, name)
    found = _profile_region()
    return BoundRegion(found.lower(), f"the aliyun CLI profile in {CLI_CONFIG}") if found else None


# The profile's region by what decides it (the file's identity and the profile variables): a
# loop of retrieve() bound by the profile took 132 us a call reading the file each time, 76 us
# with this (46 us with region= given).
_PROFILE_REGIONS: dict[tuple[object, ...], str | None] = {}


def _profile_region() -> str | None:
    path = Path.home() / ".aliyun" / "config.json"
    try:
        found = path.stat()
    except OSError:
        return None
    names = ("ALIBABA_CLOUD_PROFILE", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
    key = (str(path), found.st_mtime_ns, found.st_size, *(os.environ.get(n) for n in names))
    if key not in _PROFILE_REGIONS:
        from catalog.account import cli_region

        _PROFILE_REGIONS.clear()
        _PROFILE_REGIONS[key] = cli_region()
    return _PROFILE_REGIONS[key]


def region_advice() -> str:
    """How to bind a region, in the caller's spelling."""
    return (
        f"choose one with {spelled('region')}, or set {ENV_REGION} (or ALIBABA_CLOUD_REGION_ID, "
        "or region_id in your aliyun CLI profile)"
    )

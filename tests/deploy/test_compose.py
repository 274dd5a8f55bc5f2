"""docker-compose.yml and deploy/Dockerfile checked against the code, without a Docker engine.

The compose file is parsed as YAML and interpolated the way Compose does (${VAR:-default},
${VAR:?error}), then every MONEYTRAIL_* variable is matched against the settings object, the URLs
against the code's own parsers, the commands against the CLI, and the services against each
other (ports, listeners, dependencies, health checks, volumes)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from clickhouse.warehouse import open_warehouse
from moneytrail.bus import KafkaBus, bus_from_url
from moneytrail.cli import app as cli_app
from moneytrail.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# What a user puts in .env; everything else must have a default in the compose file.
TEST_ENV = {"CLICKHOUSE_PASSWORD": "pw-for-compose-test", "MONEYTRAIL_PII_KEY": "compose-test-pii-key-0123456789abcdef",
            "GRAFANA_ADMIN_PASSWORD": "grafana-pw-for-compose-test", "SUPERSET_SECRET_KEY": "superset-key-for-compose-test",
            "SUPERSET_ADMIN_PASSWORD": "superset-pw-for-compose-test",
            "SUPERSET_CLICKHOUSE_PASSWORD": "superset-reader-pw-for-compose-test"}
# role -> the CLI command it must run
ROLES = {"collector": "serve", "worker": "worker", "sink": "sink", "migrate": "migrate"}
ONE_SHOT = {"migrate"}
ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))


# ---- compose-style interpolation ---------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-"):
            return arg if unset_or_empty else value  # type: ignore[return-value]
        if op in ("?", ":?"):
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return value  # type: ignore[return-value]
        if op in ("+", ":+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _VAR.sub(sub, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate_tree(raw, TEST_ENV if env is None else env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = item.partition("=")
            out[key] = value
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return dockerfile()["CMD"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def settings_for(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The Settings object the process in this container would build (image ENV + service env)."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX.upper()):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no developer .env file leaks in
    merged = {**dockerfile()["ENV"], **env_of(service)}
    for key, value in merged.items():
        if key.upper().startswith(ENV_PREFIX.upper()):
            monkeypatch.setenv(key, value)
    return Settings()


def moneytrail_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The (shared) MONEYTRAIL_* values, taken from the collector."""
    return {**dockerfile()["ENV"], **env_of(services["collector"])}


def image_ref(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag, digest
    return image, None, digest


def assert_pinned(image: str) -> None:
    repo, tag, digest = image_ref(image)
    assert tag or digest, f"{image}: no tag or digest (means :latest)"
    if tag is not None:
        assert tag.lower() != "latest" and not tag.lower().startswith("latest-"), f"{image}: floating tag"
        # a full release (3.9.1, 25.8.8.26), not a line that moves under you (3.11, 25.8)
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{image}: tag {tag!r} is not a concrete version"


# ---- Dockerfile -------------------------------------------------------------------------------


def dockerfile() -> dict[str, Any]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    buf = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append(buf.strip())
        buf = ""
    args: dict[str, str] = {}
    stages: set[str] = set()
    out: dict[str, Any] = {"FROM": [], "RUN": [], "COPY": [], "ENV": {}, "ALL_ENV": {}, "USER": [],
                           "ENTRYPOINT": None, "CMD": None, "ARG": args}
    for instr in logical:
        keyword, _, rest = instr.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name.strip(), default.strip())
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            if image not in stages:  # FROM <earlier stage> is no image to pin
                out["FROM"].append(image)
            out["ENV"] = {}  # ENV of the final stage is what the containers get
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                out["ENV"][key] = out["ALL_ENV"][key] = value
        elif keyword in ("ENTRYPOINT", "CMD"):
            out[keyword] = json.loads(rest)  # exec form only: a shell form is not JSON and fails here
        elif keyword in ("RUN", "COPY", "USER"):
            out[keyword].append(rest)
    return out


def test_dockerfile_base_images_are_pinned() -> None:
    froms = dockerfile()["FROM"]
    assert froms, "no FROM"
    for image in froms:
        assert_pinned(image)
        assert image.startswith("python:3.11"), f"{image}: the project requires Python 3.11"


def test_dockerfile_installs_the_locked_environment() -> None:
    df = dockerfile()
    runs = " \n".join(df["RUN"])
    assert re.search(r"pip install [^\n]*\buv==\d+\.\d+\.\d+", runs), "uv must be installed at a pinned version"
    syncs = [r for r in df["RUN"] if re.search(r"\buv sync\b", r)]
    assert syncs, "no `uv sync`"
    for run in syncs:
        assert "--frozen" in run.split(), f"`{run}` may re-resolve: use --frozen"
        assert "--no-dev" in run.split(), f"`{run}` installs the dev group"
    copied = " ".join(c for c in df["COPY"] if not c.startswith("--from"))
    for needed in ("pyproject.toml", "uv.lock", "README.md"):  # README: pyproject's readme, needed to build
        assert re.search(rf"(^|\s){re.escape(needed)}(\s|$)", copied), f"{needed} is not copied"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for pkg in packages:
        assert re.search(rf"(^|\s)\.?/?{re.escape(pkg)}/?(\s|$)", copied), f"package {pkg} is not copied into the image"


def test_dockerfile_runs_moneytrail_as_non_root() -> None:
    df = dockerfile()
    assert df["ENTRYPOINT"] and "moneytrail" in df["ENTRYPOINT"][0], df["ENTRYPOINT"]
    if not df["ENTRYPOINT"][0].startswith("/"):  # found through PATH: the venv's bin must be on it
        venv = df["ALL_ENV"].get("UV_PROJECT_ENVIRONMENT")
        assert venv, "set UV_PROJECT_ENVIRONMENT so the venv has a known path"
        assert f"{venv}/bin" in df["ENV"].get("PATH", "").split(":"), "the venv's bin is not on the runtime PATH"
        assert len(df["FROM"]) == 1 or any(c.startswith("--from") and c.split()[-2] == venv for c in df["COPY"]), \
            "the runtime stage does not copy the venv"
    assert df["CMD"], "no default command"
    assert "moneytrail" in " ".join(df["ENTRYPOINT"] + df["CMD"])
    result = CliRunner().invoke(cli_app, [*df["CMD"], "--help"])
    assert result.exit_code == 0, f"CMD {df['CMD']} is not a moneytrail command: {result.output}"
    assert df["USER"], "the image runs as root"
    user = df["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the image runs as root"
    for key in df["ENV"]:
        if key.upper().startswith(ENV_PREFIX.upper()):
            assert key.upper() in allowed_env_names(), f"Dockerfile ENV {key} is no setting"


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a context path."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` (or a parent folder of it) out of the build context."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _dockerignore_regex(line.lstrip("!"))))
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        excluded = False
        for negated, regex in rules:
            if regex.match(prefix):
                excluded = not negated
        if excluded:
            return True
    return False


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    for path in (".venv", ".git", "moneytrail-data", "tests", "bench", "moneytrail/__pycache__",
                 "clickhouse/migrations/__pycache__", ".env"):
        assert dockerignored(path), f"{path} would be sent to the build context"
    sources = []
    for copy in dockerfile()["COPY"]:
        words = [w for w in copy.split() if not w.startswith("--")]
        if copy.startswith("--from"):
            continue
        sources += words[:-1]
    assert sources
    for src in sources:
        assert not dockerignored(src.removeprefix("./")), f".dockerignore hides {src}, which the Dockerfile copies"


# ---- compose: variables and settings ----------------------------------------------------------


def allowed_env_names() -> set[str]:
    return {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


def test_compose_is_valid_yaml_with_every_role(compose: dict[str, Any]) -> None:
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    assert {"kafka", "clickhouse", *ROLES} <= set(compose["services"])
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes") or []:
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: named volume {source} is not declared"


def test_every_variable_is_defaulted_or_required() -> None:
    """A variable without a default must be marked required (${VAR:?msg}) somewhere, so a missing
    secret stops `docker compose up` instead of becoming an empty password."""
    text = COMPOSE_FILE.read_text()
    refs = [m for m in _VAR.finditer(text) if m.group(0) != "$$"]
    assert refs
    for m in refs:
        name = m.group("name") or m.group("bare")
        ops = {(r.group("op") or "") for r in refs if (r.group("name") or r.group("bare")) == name}
        assert ops & {"-", ":-", "?", ":?"}, f"${{{name}}} has neither a default nor a required marker"
    with pytest.raises(MissingVariable, match="CLICKHOUSE_PASSWORD"):
        load_compose(env={})


def test_moneytrail_variables_are_settings_fields(services: dict[str, dict[str, Any]]) -> None:
    allowed = allowed_env_names()
    assert len(allowed) == len(Settings.model_fields) > 0
    seen = 0
    for name, svc in services.items():
        for key in env_of(svc):
            if key.upper().startswith(ENV_PREFIX.upper()):
                seen += 1
                assert key.upper() in allowed, f"{name}: {key} is not a field of moneytrail.settings.Settings"
    assert seen, "compose sets no MONEYTRAIL_* variable"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_settings_accept_each_role_env(role: str, services: dict[str, dict[str, Any]],
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = settings_for(services[role], monkeypatch, tmp_path)
    assert not settings.embedded, f"{role} would run embedded (memory bus)"
    assert not settings.warehouse_url.startswith("chdb://"), f"{role} would open a local chDB folder"
    assert str(settings.data_dir).startswith("/"), "the data dir must be absolute in a container"


def test_bus_url_is_accepted_by_the_code(services: dict[str, dict[str, Any]]) -> None:
    env = moneytrail_env(services)
    url = env[f"{ENV_PREFIX}BUS"]
    for role in ROLES:  # one bus for all
        assert {**dockerfile()["ENV"], **env_of(services[role])}[f"{ENV_PREFIX}BUS"] == url, role
    bus = bus_from_url(url, "moneytrail")  # constructs, does not connect
    assert isinstance(bus, KafkaBus), f"{url} is not a Kafka bus"
    for broker in url.removeprefix("kafka://").rstrip("/").split(","):
        host, _, port = broker.rpartition(":")
        assert host in services, f"bus broker {host} is no compose service"
        assert port.isdigit()


def test_warehouse_url_is_the_clickhouse_service(services: dict[str, dict[str, Any]]) -> None:
    documented = set(re.findall(r"([a-z]+)://", open_warehouse.__doc__ or ""))
    assert "clickhouse" in documented, f"open_warehouse documents {documented}"
    url = moneytrail_env(services)[f"{ENV_PREFIX}WAREHOUSE"]
    for role in ROLES:
        assert {**dockerfile()["ENV"], **env_of(services[role])}[f"{ENV_PREFIX}WAREHOUSE"] == url, role
    u = urlsplit(url)
    assert u.scheme in documented and u.scheme != "chdb", f"{u.scheme}:// is not a server warehouse"
    assert u.hostname in services, f"warehouse host {u.hostname} is no compose service"
    ch = env_of(services[u.hostname])
    assert (u.port or 8123) == 8123, "ClickHouse's HTTP port in the container is 8123"
    assert "8123/ping" in healthcheck_text(services[u.hostname])
    assert unquote(u.username or "") == ch["CLICKHOUSE_USER"]
    assert unquote(u.password or "") == ch["CLICKHOUSE_PASSWORD"] == TEST_ENV["CLICKHOUSE_PASSWORD"]
    assert u.path.strip("/") == ch["CLICKHOUSE_DB"]


# ---- compose: images, health, restart, commands -----------------------------------------------


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = set()
    for name, svc in services.items():
        assert "image" in svc, f"{name}: no image"
        assert_pinned(svc["image"])
        if "build" in svc:
            build = svc["build"]
            assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve(), name
            built.add(svc["image"])
            assert image_ref(svc["image"]) == ("moneytrail", version, None), \
                f"{name}: {svc['image']} should default to the project version {version}"
    assert len(built) == 1, f"the moneytrail roles should share one image, got {built}"
    for role in ROLES:
        assert "build" in services[role] and "entrypoint" not in services[role], role


def test_long_running_services_have_healthcheck_and_restart(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        restart = str(svc.get("restart", "no"))
        if name in ONE_SHOT:
            assert restart == "no", f"{name} is one-shot: restart must be \"no\""
            continue
        assert restart in ("always", "unless-stopped") or restart.startswith("on-failure"), f"{name}: restart={restart}"
        hc = svc.get("healthcheck") or {}
        assert not hc.get("disable"), f"{name}: healthcheck disabled"
        test = hc.get("test")
        assert test and test not in (["NONE"], "NONE"), f"{name}: no healthcheck"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must start with CMD or CMD-SHELL"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_commands_are_real_cli_commands(role: str, services: dict[str, dict[str, Any]]) -> None:
    cmd = command_of(services[role])
    assert cmd[0] == ROLES[role], f"{role} runs {cmd}"
    result = CliRunner().invoke(cli_app, [*cmd, "--help"])
    assert result.exit_code == 0, f"`moneytrail {' '.join(cmd)}` is not valid: {result.output}"


def test_collector_publishes_the_port_it_listens_on(services: dict[str, dict[str, Any]],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    svc = services["collector"]
    settings = settings_for(svc, monkeypatch, tmp_path)
    assert settings.host == "0.0.0.0", "in a container the collector must listen on all interfaces"
    targets = []
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            targets.append(int(port["target"]))
        else:
            targets.append(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    assert targets == [settings.port], f"published container ports {targets}, collector listens on {settings.port}"
    assert "/readyz" in healthcheck_text(svc)
    assert "MONEYTRAIL_PORT" in healthcheck_text(svc) or str(settings.port) in healthcheck_text(svc)


def test_worker_health_uses_its_web_port(services: dict[str, dict[str, Any]],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = settings_for(services["worker"], monkeypatch, tmp_path)
    text = healthcheck_text(services["worker"])
    assert f"{ENV_PREFIX}WORKER_WEB_PORT" in text or str(settings.worker_web_port) in text
    assert "127.0.0.1" in text  # Faust's web server binds there (stream_processors/faust_app.py)


# ---- compose: Kafka ----------------------------------------------------------------------------


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_kafka_advertises_what_the_bus_url_names(services: dict[str, dict[str, Any]]) -> None:
    kafka = env_of(services["kafka"])
    bus = moneytrail_env(services)[f"{ENV_PREFIX}BUS"]
    bootstrap = {(h, int(p)) for h, _, p in (b.rpartition(":") for b in bus.removeprefix("kafka://").rstrip("/").split(","))}
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    client = {name for name, addr in advertised.items() if addr in bootstrap}
    assert client, f"bus {bootstrap} matches no advertised listener {advertised}"
    for name in client:
        assert listeners[name][1] == advertised[name][1], f"listener {name} binds another port than it advertises"
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert all(protocols[name] == "PLAINTEXT" for name in client), "the bus URL speaks PLAINTEXT"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    roles = set(kafka["KAFKA_PROCESS_ROLES"].split(","))
    assert roles == {"broker", "controller"}, "single node KRaft: broker and controller"
    voters = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == [kafka["KAFKA_NODE_ID"]]
    ctrl_host, _, ctrl_port = voters[0].split("@")[1].rpartition(":")
    assert int(ctrl_port) == listeners[kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
    brokers = len(voters)
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
        assert 1 <= int(kafka.get(key, "3")) <= brokers, f"{key} needs more brokers than there are"
    data = kafka["KAFKA_LOG_DIRS"]
    assert any(str(v).split(":")[1:2] == [data] for v in services["kafka"].get("volumes") or []), \
        "Kafka's log dir is not on a volume"
    hc = healthcheck_text(services["kafka"])
    assert "kafka-broker-api-versions.sh" in hc
    probe = re.search(r"--bootstrap-server\s+\S+:(\d+)", hc)
    assert probe and int(probe.group(1)) in {listeners[name][1] for name in client}, \
        "the health check must probe the client listener"


def test_topics_match_the_broker(tmp_path: Path, services: dict[str, dict[str, Any]],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Topics we create and topics Kafka auto-creates (the collector may publish first) must get
    the same partition count, and no replication factor above the broker count."""
    from stream_processors.channels import ChannelRules
    from stream_processors.faust_app import build_app

    kafka = env_of(services["kafka"])
    brokers = len(kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    for role in ("worker", "sink", "collector"):
        settings = settings_for(services[role], monkeypatch, tmp_path)
        if "kafka_partitions" in Settings.model_fields:
            partitions = settings.kafka_partitions
            assert 1 <= settings.kafka_replication <= brokers, f"{role}: replication above the broker count"
        else:
            partitions = build_app("kafka:9092", "moneytrail", tmp_path, ChannelRules.load(None)).conf.topic_partitions
        if kafka.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true").lower() == "true":
            assert int(kafka.get("KAFKA_NUM_PARTITIONS", "1")) == partitions, \
                f"{role} uses {partitions} partitions, auto-created topics get {kafka.get('KAFKA_NUM_PARTITIONS', '1')}"


# ---- compose: order, volumes, ClickHouse ------------------------------------------------------


EXPECTED_DEPENDENCIES = {
    "migrate": {"clickhouse": "service_healthy"},
    "collector": {"kafka": "service_healthy", "clickhouse": "service_healthy",
                  "migrate": "service_completed_successfully"},
    "worker": {"kafka": "service_healthy"},
    "sink": {"kafka": "service_healthy", "clickhouse": "service_healthy",
             "migrate": "service_completed_successfully"},
}


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for role, expected in EXPECTED_DEPENDENCIES.items():
        deps = services[role].get("depends_on") or {}
        assert isinstance(deps, dict), f"{role}: depends_on needs conditions (long syntax)"
        for target, condition in expected.items():
            assert target in deps, f"{role} does not wait for {target}"
            assert deps[target].get("condition") == condition, f"{role} -> {target}: {deps[target]}"
    for name, svc in services.items():
        for target, spec in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if spec.get("condition") == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s health, which has no check"
            if spec.get("condition") == "service_completed_successfully":
                assert str(services[target].get("restart", "no")) == "no", f"{target} must be one-shot"


def test_worker_state_is_on_a_named_volume_at_the_data_dir(compose: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    worker = compose["services"]["worker"]
    data_dir = str(settings_for(worker, monkeypatch, tmp_path).data_dir)
    mounts = {}
    for vol in worker.get("volumes") or []:
        if isinstance(vol, dict):
            mounts[vol["target"]] = vol["source"]
        else:
            source, target = vol.split(":")[:2]
            mounts[target] = source
    assert data_dir in mounts, f"worker's data dir {data_dir} (Faust RocksDB tables) is not on a volume: {mounts}"
    assert mounts[data_dir] in (compose.get("volumes") or {}), "use a declared named volume"
    runs = " ".join(dockerfile()["RUN"])
    assert re.search(rf"mkdir -p [^&;]*{re.escape(data_dir)}", runs) and re.search(rf"chown [^&;]*{re.escape(data_dir)}", runs), \
        "the image must create the data dir owned by its user, so a new volume there is writable"


def test_clickhouse_service(services: dict[str, dict[str, Any]]) -> None:
    ch = services["clickhouse"]
    assert image_ref(ch["image"])[0] == "clickhouse/clickhouse-server"
    nofile = (ch.get("ulimits") or {}).get("nofile")
    assert nofile and int(nofile["soft"]) >= 262144 and int(nofile["hard"]) >= 262144
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    assert ":?" in raw, "the ClickHouse password must be required, never defaulted"
    assert any(str(v).split(":")[1:2] == ["/var/lib/clickhouse"] for v in ch.get("volumes") or [])
    for port in ch.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), "ClickHouse must not be published on every interface"


# ---- compose: Grafana (BI) ---------------------------------------------------------------------

_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$", re.I)
_REQUIRED_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^{}]*\}$")


def test_no_literal_secrets_in_the_compose_file() -> None:
    """A secret-looking variable of any service is a required ${VAR:?msg}, never a value or a default."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    envs = {"x-moneytrail-env": raw["x-moneytrail-env"],
            **{name: svc.get("environment") or {} for name, svc in raw["services"].items()}}
    checked = 0
    for name, env in envs.items():
        for key, value in env.items():
            if key == "<<" or not _SECRET_NAME.search(key):
                continue
            checked += 1
            assert _REQUIRED_REF.match(str(value)), f"{name}: {key}={value!r} is a literal or defaulted secret"
    assert checked >= 4  # ClickHouse's and Grafana's passwords, the PII key, Grafana's copy of the ClickHouse one


def test_grafana_service(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert image_ref(grafana["image"])[0] == "grafana/grafana-oss"  # pinned: test_every_image_is_pinned
    env = env_of(grafana)
    plugins = [p.strip().split() for p in env["GF_INSTALL_PLUGINS"].split(",")]
    assert ["grafana-clickhouse-datasource"] == [p[0] for p in plugins]
    assert all(len(p) == 2 and re.fullmatch(r"\d+\.\d+\.\d+", p[1]) for p in plugins), \
        f"plugins must be pinned to a version: {env['GF_INSTALL_PLUGINS']}"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == TEST_ENV["GRAFANA_ADMIN_PASSWORD"]
    missing = {k: v for k, v in TEST_ENV.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        load_compose(env=missing)
    for port in grafana.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), "Grafana must not be published on every interface"
    binds = {}
    for vol in grafana.get("volumes") or []:
        source, target, *mode = str(vol).split(":")
        if source.startswith("."):
            binds[target] = source
            assert mode == ["ro"], f"{vol}: provisioning is mounted read-only"
            assert (ROOT / source).is_dir(), f"{source} does not exist"
    assert (ROOT / binds["/etc/grafana/provisioning"] / "datasources").is_dir()
    assert (ROOT / binds["/etc/grafana/provisioning"] / "dashboards").is_dir()
    assert any((ROOT / s).glob("*.json") for s in binds.values()), "no dashboard JSON is mounted"
    assert any(str(v).split(":")[1:2] == ["/var/lib/grafana"] for v in grafana["volumes"]), \
        "Grafana's database (and the downloaded plugin) must be on a volume"
    assert grafana["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert "/api/health" in healthcheck_text(grafana)

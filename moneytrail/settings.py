"""The one settings object. Read from MONEYTRAIL_* environment variables (and an optional .env)
once, in the composition root; everything else receives what it needs as arguments."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MONEYTRAIL_", frozen=True, env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("moneytrail-data"), description="local state: chDB warehouse, Faust tables, lock")
    bus: str = Field("memory://", description="memory:// (embedded) or kafka://host:9092[,host:9092]")
    warehouse: str = Field("", description="chdb:///path (default: <data_dir>/warehouse) or clickhouse://user:pass@host:8123/db")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = Field("", description="URL the collector is reached at (for printed links); default http://host:port")
    topic_prefix: str = "moneytrail"
    kafka_partitions: int = Field(4, description="partitions of each topic we create; the most workers that can share the work")
    kafka_ack_timeout_s: float = Field(2.0, description="wait this long for Kafka's acknowledgement before spooling to local disk")
    kafka_replication: int = Field(1, description="replication factor of topics we create (3 on a real cluster)")
    spool_max_bytes: int = Field(1 << 30, ge=0, description="the collector's Kafka spool holds at most this much; beyond it events get 503 (0: no cap)")
    spool_min_free_bytes: int = Field(256 << 20, ge=0, description="the spool never leaves less free space than this on its filesystem; beyond it events get 503")
    channel_rules: Path | None = Field(None, description="channel rules TOML; default: the built-in rules")
    session_timeout_minutes: int = Field(30, description="a session ends after this long without events")
    lookback_days: int = Field(90, description="live attribution credits a conversion's touches of this many days before it")
    max_verified_phones: int = Field(1, description="a cookie or device may join at most this many people with different verified phones")
    lead_repeat_days: int = Field(30, ge=0, le=365, description="a person's lead within this many days after their previous lead is a repeat enquiry, counted once (0: every lead counts)")
    credits_prune_minutes: float = Field(10, ge=0, description="the sink deletes superseded credit versions this often (0: never)")
    sink_batch_rows: int = 10_000
    sink_batch_seconds: float = 0.5
    sink_group: str = "moneytrail-sink"
    worker_id: str = "moneytrail-processors"
    worker_web_port: int = 6066
    worker_stall_seconds: int = Field(60, ge=5, description="a worker whose input has lag but that finished no batch for this long (outside recovery and rebalancing) logs every task's stack and exits with code 70, to be restarted; so does one whose partition's commit waits this long at an unprocessed record while later records were processed (the restarted worker reads it again)")
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_events: int = 500
    clock_skew_tolerance_s: int = 3600
    rate_limit_ip_rps: float = Field(200.0, description="ingest requests per second per client address (burst 2x); 0 turns it off")
    max_header_bytes: int = Field(16384, ge=1024, description="a request head (request line and headers) larger than this is answered 431 and its connection closed")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection whose request head is not complete this long after it began is closed")
    drain_seconds: float = Field(5.0, ge=0, description="on SIGTERM `serve` answers /readyz 503 and keeps serving for this long before it stops listening (a load balancer's time to stop sending)")
    rate_limit_key_eps: float = Field(5000.0, description="ingest events per second per project (burst 2x); 0 turns it off")
    pii_key: str = Field("", description="secret for keyed hashes of phones/emails (>= 32 chars); embedded mode makes one in the data dir")
    default_currency: str = Field("KZT", description="currency of money that arrives without one, and of reports by default")
    default_region: str = Field("KZ", description="country of phone numbers written without a country code")
    trusted_proxies: tuple[str, ...] = Field((), description="CIDRs of load balancers whose X-Forwarded-For is believed")
    log_level: str = "info"

    @field_validator("bus")
    @classmethod
    def _bus(cls, v: str) -> str:
        if not (v.startswith("memory://") or v.startswith("kafka://")):
            raise ValueError("MONEYTRAIL_BUS must be memory:// or kafka://host:port")
        return v

    @property
    def warehouse_url(self) -> str:
        return self.warehouse or f"chdb://{(self.data_dir / 'warehouse').resolve()}"

    @property
    def warehouse_display(self) -> str:
        """The warehouse URL without its password, for logs."""
        u = urlsplit(self.warehouse_url)
        if u.password is None:
            return self.warehouse_url
        return urlunsplit(u._replace(netloc=u.netloc.replace(f":{u.password}@", ":***@")))

    @property
    def embedded(self) -> bool:
        return self.bus.startswith("memory://")

    @property
    def kafka_bootstrap(self) -> str:
        return self.bus.removeprefix("kafka://").rstrip("/")

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

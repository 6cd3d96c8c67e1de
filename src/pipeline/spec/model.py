"""The cloud-neutral pipeline spec: what a user writes in `pipeline.yaml`.

Every field has a documented default so a minimal spec is short; every limit here is the
common ground of AWS, GCP and Azure. Limits only one cloud has are checked by its backend.
"""

from __future__ import annotations

import ast
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from pipeline.errors import clip, echo, odd_character
from pipeline.spec.numbers import refuse_booleans
from pipeline.spec.paths import FileTooLargeError, check_tree, read_regular_file, resolve_in_project
from pipeline.spec.schedule import CRON_HINT, Schedule, check_timezone, parse_schedule

# Strictest common ground: GCP service accounts and Azure resources need a leading letter,
# S3 and Azure storage need lowercase, and names are prefixes of longer cloud names.
# Every pattern here is matched with re.fullmatch: with re.match, '$' also matches before a
# trailing newline, so 'demo\n' passed. (`pattern=` fields are matched by pydantic-core's Rust
# regex, where '$' is the end of the text, but '\d' there is any Unicode digit: use [0-9].)
NAME_PATTERN = r"[a-z][a-z0-9-]*[a-z0-9]"
NAME_HINT = "3-20 characters: lowercase letters, digits and single hyphens, starting with a letter and ending with a letter or digit"
STAGE_HINT = "2-20 characters: lowercase letters, digits and single hyphens, starting with a letter and ending with a letter or digit"
RESERVED_STAGE_NAMES = frozenset({"raw", "dead-letter", "artifacts"})  # bucket keys the orchestrator uses
_HANDLER = re.compile(r"(?P<file>[^:]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")
HANDLER_SOURCE_LIMIT = 4 * 1024 * 1024  # bytes of a handler file parsed at validation


def _tag_key(key: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key):
        raise ValueError(f"tag key {echo(key)} is not portable{odd_character(key)}; use up to 63 lowercase letters, digits, '_' or '-', starting with a letter (GCP label rules)")
    return key


def _tag_value(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
        raise ValueError(f"tag value {echo(value)} is not portable{odd_character(value)}; use up to 63 lowercase letters, digits, '_' or '-' (GCP label rules)")
    return value


def _env_key(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ValueError(f"{echo(key)} is not a valid environment variable name{odd_character(key)}; use letters, digits and '_', not starting with a digit")
    if key.upper().startswith(("PIPELINE_", "AWS_", "AZURE", "FUNCTIONS_", "GOOGLE_", "K_")):
        raise ValueError(f"{echo(key)} uses a prefix reserved by the runtime or a cloud (PIPELINE_, AWS_, AZURE*, FUNCTIONS_, GOOGLE_, K_)")
    return key


def _partitions(value: object) -> str | int:
    """One clear error for 'auto' or a whole number, instead of one per union member."""
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024:
        return value
    raise ValueError(f"partitions must be 'auto' or a whole number from 1 to 1024 (got {echo(value)})")


TagKey = Annotated[str, AfterValidator(_tag_key)]
TagValue = Annotated[str, AfterValidator(_tag_value)]
EnvKey = Annotated[str, AfterValidator(_env_key)]
Partitions = Annotated[Literal["auto"] | int, PlainValidator(_partitions, json_schema_input_type=Literal["auto"] | Annotated[int, Field(ge=1, le=1024)])]


def _check_name(value: str, low: int, high: int, hint: str) -> str:
    if not (low <= len(value) <= high) or not re.fullmatch(NAME_PATTERN, value) or "--" in value:
        raise ValueError(f"{echo(value)} is not a valid name{odd_character(value)}; use {hint}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: object, info: ValidationInfo) -> object:
        """`retries: true` is a mistake, not 1 (every field, in every model, including new ones)."""
        if info.field_name is not None:
            refuse_booleans(value, cls.model_fields[info.field_name].annotation, cls.__name__)
        return value


class StreamSpec(Strict):
    """The ingest stream. Records arrive here first."""

    partitions: Partitions = Field(
        "auto",
        description="Shards / partitions: 'auto' sizes them from `workload`; a number fixes them (1-1024).",
    )
    retention_hours: int = Field(24, ge=24, le=168, description="How long the stream keeps records (24-168 h, the range all three clouds support).")
    archive: bool = Field(True, description="Archive every raw record to object storage (the 'raw' bucket).")


class StreamTrigger(Strict):
    """Run the stage on batches of stream records."""

    batch_size: int = Field(100, ge=1, le=10_000, description="Most records per invocation.")
    max_batching_window_s: int = Field(5, ge=0, le=300, description="Longest wait to fill a batch, in seconds.")
    starting_position: Literal["latest", "earliest"] = Field("latest", description="Where a new consumer starts reading.")


class ObjectsTrigger(Strict):
    """Run the stage on each new object written by an earlier stage, or dropped into the uploads bucket."""

    from_stage: str = Field(alias="from", description="An earlier stage whose outputs this stage reads, or the uploads bucket's name.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HttpTrigger(Strict):
    """Run the stage on demand over HTTPS, for authenticated callers only.

    Without `from`, a request carries rows in and gets the output rows back. With `from`, a request runs the
    stage over the rows the named stage (or the uploads bucket) wrote since the last successful run, exactly as a
    scheduled run with `from` does (same window, watermark and lease), and answers what the run read and wrote.
    Never anonymous: each cloud authenticates callers with its own identities (see `clouds.<cloud>.http_invokers`).
    """

    persist: bool = Field(False, description="Also write each request's output rows to the stage's bucket, like other stages do (always, with `from`).")
    from_stage: str | None = Field(
        None, alias="from",
        description="Run over the rows this earlier stage (or the uploads bucket) wrote since the last successful run, instead of the request's rows.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Trigger(Strict):
    """Exactly one of `stream`, `objects`, `schedule` or `http`; a schedule may read accumulated outputs (`from`)."""

    stream: StreamTrigger | None = None
    objects: ObjectsTrigger | None = None
    schedule: str | None = Field(None, description=f"A schedule: {CRON_HINT}.")
    from_stage: str | None = Field(
        None, alias="from",
        description="With `schedule` only: each run gets the rows the named stage (or the uploads bucket) wrote since the last successful run.",
    )
    http: HttpTrigger | None = None
    timezone: str | None = Field(
        None,
        description="With `schedule` only: the IANA time zone its cron fields are read in, e.g. Europe/Paris (default UTC). "
                    "Clouds that cannot fire in a zone say so when the spec is validated for them.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            check_timezone(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        chosen = [k for k in ("stream", "objects", "schedule", "http") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"a trigger needs exactly one of 'stream', 'objects', 'schedule' or 'http' (found {', '.join(chosen) or 'none'})"
            )
        if self.from_stage is not None and self.schedule is None:
            raise ValueError("'from' beside the trigger kind only goes with 'schedule' (objects and http triggers write it inside: "
                             "objects: {from: ...}, http: {from: ...})")
        if self.timezone is not None and self.schedule is None:
            raise ValueError("'timezone' only goes with 'schedule', e.g. {schedule: '0 6 * * *', timezone: Europe/Paris}")
        return self

    @property
    def kind(self) -> Literal["stream", "objects", "schedule", "http"]:
        return "stream" if self.stream else "objects" if self.objects else "http" if self.http else "schedule"

    @property
    def source(self) -> str | None:
        """The stage or uploads bucket whose objects this trigger reads (objects, or a schedule or HTTP stage with `from`)."""
        return self.objects.from_stage if self.objects else self.window_source

    @property
    def window_source(self) -> str | None:
        """The stage or uploads bucket a schedule or HTTP stage reads in windows: each run gets what it wrote since the
        last successful run (a watermark and a lease in the stage's own bucket). None for every other trigger."""
        if self.http is not None:
            return self.http.from_stage
        return self.from_stage

    @cached_property
    def parsed_schedule(self) -> Schedule:
        assert self.schedule is not None
        return parse_schedule(self.schedule)


class StageSpec(Strict):
    """One processing step: a plain Python handler and what triggers it."""

    name: str = Field(description=f"Stage name: {STAGE_HINT}.")
    handler: str = Field(description="`path/to/file.py:function`, relative to the spec file.")
    trigger: Trigger
    memory_mb: int = Field(512, ge=128, le=10_240, description="Memory for the function, in MB.")
    timeout_s: int = Field(60, ge=1, le=900, description="Longest run of one invocation, in seconds.")
    retries: int = Field(3, ge=0, le=10, description="Times a failing batch or event is retried before it is dead-lettered.")
    max_event_age_s: int = Field(3600, ge=60, le=86_400, description="Oldest a failing event may get before it is dead-lettered, in seconds.")
    environment: dict[EnvKey, str] = Field(default_factory=dict, description="Extra environment variables for the handler.")
    requirements: str | None = Field(None, description="A pip requirements file for this stage, relative to the spec file.")
    model: str | None = Field(None, description="A model artifact file the handler loads, relative to the spec file.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, 2, 20, STAGE_HINT)

    @field_validator("environment")
    @classmethod
    def _valid_environment(cls, value: dict[str, str]) -> dict[str, str]:
        if sum(len(k) + len(v) for k, v in value.items()) > 4000:
            raise ValueError("environment variables total more than 4,000 characters (Lambda allows 4 KB)")
        return value

    @field_validator("handler")
    @classmethod
    def _valid_handler(cls, value: str, info: ValidationInfo) -> str:
        match = _HANDLER.fullmatch(value)
        if not match:
            raise ValueError(f"{echo(value)} is not a handler{odd_character(value)}; write 'path/to/file.py:function' (the function name in ASCII)")
        path = _existing_file(match.group("file"), info, "handler file")
        function = match.group("function")
        if path is not None:
            base = Path((info.context or {})["base_dir"])
            check_tree(base, (base / match.group("file")).parent)  # the whole folder is shipped
            shown = clip(match.group("file"), 100)  # control characters were refused with the path
            try:
                source = read_regular_file(path, HANDLER_SOURCE_LIMIT, no_follow=True)
            except FileTooLargeError as exc:
                raise ValueError(f"{shown} is {exc.size:,} bytes{' or more' if exc.grew else ''}; a handler file may be at most {exc.limit:,} bytes "
                                 "(put data in the model file)") from None
            try:
                tree = ast.parse(source, filename=str(path))
            except (SyntaxError, ValueError) as exc:
                raise ValueError(f"{shown} is not valid Python: {exc}") from None
            except (RecursionError, MemoryError):
                raise ValueError(f"{shown} is nested too deeply for Python to parse") from None
            defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            if function not in defined:
                found = clip(", ".join(defined) or "none", 200)
                raise ValueError(f"{shown} defines no top-level function {echo(function)} (functions found: {found})")
        return value

    @field_validator("requirements", "model")
    @classmethod
    def _valid_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _existing_file(value, info, f"{info.field_name} file")
        return value

    @property
    def writes_objects(self) -> bool:
        """HTTP stages answer their caller and write objects only with `persist: true`, or when they run over
        accumulated outputs (`from`), whose results are too many rows for an answer."""
        http = self.trigger.http
        return not (http and not http.persist and not http.from_stage)

    @property
    def handler_file(self) -> str:
        return self.handler.split(":", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.split(":", 1)[1]


def _existing_file(relative: str, info: ValidationInfo, what: str) -> Path | None:
    """Resolve a path relative to the spec file; it must be a file inside the project (see spec.paths)."""
    base = (info.context or {}).get("base_dir")
    if base is None:
        return None
    return resolve_in_project(Path(base), relative, what)


class StorageSpec(Strict):
    """How long object storage keeps each kind of data, in days."""

    raw_days: int = Field(30, ge=1, le=3650, description="Raw archived stream records.")
    uploads_days: int = Field(30, ge=1, le=3650, description="Files producers dropped into the uploads bucket.")
    intermediate_days: int = Field(7, ge=1, le=3650, description="Outputs another stage reads.")
    final_days: int = Field(365, ge=1, le=3650, description="Outputs of the last stages (no stage reads them).")
    dead_letter_days: int = Field(14, ge=1, le=14, description="Dead-lettered records and events (at most 14 days, the SQS maximum).")


class UploadsSpec(Strict):
    """A landing bucket where outside producers drop files: JSON lines, optionally gzip-compressed (`.gz`)."""

    name: str = Field("uploads", description=f"The landing bucket's key; object stages read it with `from: <name>`. {STAGE_HINT}.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, 2, 20, STAGE_HINT)

    @property
    def prefix(self) -> str:
        """Producers write under this prefix; the same `<key>/` layout as every stage's outputs."""
        return f"{self.name}/"


class StageWorkload(Strict):
    """The work one stage does, per record and per invocation, the same on every cloud.

    One invocation that handles n records takes `ms_per_invocation + n * ms_per_record`; each cloud
    decides n from its own batching, so compute is priced for the same work everywhere.
    """

    ms_per_record: float = Field(1.0, ge=0, le=900_000, description="Handler time per record or row, in ms.")
    ms_per_invocation: float = Field(
        100.0, ge=0, le=900_000,
        description="Fixed time of one invocation on top of its records (reading the input, writing the output), in ms.",
    )
    output_ratio: float = Field(1.0, ge=0, le=1000, description="Output rows per input record (0.5 when the handler drops half).")
    requests_per_second: float | None = Field(
        None, ge=0, le=100_000,
        description="HTTP stages only: average requests per second to this stage, instead of workload.http.requests_per_second "
                    "(an API called often next to a window stage called now and then).",
    )


class HttpWorkload(Strict):
    """Requests to each HTTP stage."""

    requests_per_second: float = Field(1.0, ge=0, le=100_000, description="Average requests per second to each HTTP stage.")
    rows_per_request: int = Field(10, ge=1, le=100_000, description="Rows in one request body.")


class UploadsWorkload(Strict):
    """Files producers drop into the uploads bucket."""

    files_per_hour: float = Field(60.0, ge=0, le=3_600_000, description="Average files uploaded per hour.")
    records_per_file: int = Field(10_000, ge=1, le=100_000_000, description="JSON lines per file (each of `record_bytes`).")


_WORKLOAD_RENAMED = ("this key was replaced by a per-record model: write "
                     "workload.stages.<stage>: {ms_per_record: ..., ms_per_invocation: ...} (one invocation of n records "
                     "takes ms_per_invocation + n x ms_per_record; each cloud's batching decides n)")


class WorkloadSpec(Strict):
    """The expected load: drives capacity sizing (stream and every stage) and cost estimates."""

    records_per_second: float = Field(100.0, gt=0, le=1_000_000, description="Average records per second into the stream.")
    record_bytes: int = Field(1024, ge=1, le=1_048_576, description="Average record (or uploaded JSON line) size in bytes.")
    stages: dict[str, StageWorkload] = Field(default_factory=dict, description="Work per stage; stages not listed use the defaults.")
    http: HttpWorkload = Field(default_factory=HttpWorkload)  # type: ignore[arg-type]
    uploads: UploadsWorkload = Field(default_factory=UploadsWorkload)  # type: ignore[arg-type]
    # The old per-invocation key: invocations hold different numbers of records on each cloud, so it priced the
    # same work differently. Kept only to say what to write instead.
    stage_duration_ms: SkipJsonSchema[Any] = Field(None, exclude=True)

    @field_validator("stage_duration_ms")
    @classmethod
    def _renamed(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(_WORKLOAD_RENAMED)

    def stage(self, name: str) -> StageWorkload:
        return self.stages.get(name) or StageWorkload.model_validate({})

    def http_requests_per_second(self, stage: str) -> float:
        """Requests per second to one HTTP stage: its own figure, else the one every HTTP stage shares."""
        own = self.stage(stage).requests_per_second
        return self.http.requests_per_second if own is None else own

    @property
    def bytes_per_second(self) -> float:
        return self.records_per_second * self.record_bytes


class AlertsSpec(Strict):
    """Who is told when the pipeline is unhealthy (dead letters, errors, lag)."""

    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]] = Field(
        default_factory=list, max_length=20, description="E-mail addresses subscribed to every alert (each must confirm the subscription).",
    )
    webhook: str | None = Field(
        None, pattern=r"^https://[^\s]+$", max_length=2048,
        description="An HTTPS URL that receives every alert (kept as a secret in the deploy state).",
    )


_INVOKERS = "Principals allowed to call HTTP stages, besides the pipeline's own caller identity."
_SOURCES = "Which sources this producer may feed: 'stream' and/or the uploads bucket's name (default: every source the pipeline has)."
AWS_PRINCIPAL = r"[0-9]{12}|arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(root|role/[A-Za-z0-9+=,.@_/-]{1,512}|user/[A-Za-z0-9+=,.@_/-]{1,512})"
GCP_MEMBER = r"(user|group|serviceAccount):[^@\s]+@[^@\s]+\.[^@\s]+|domain:[a-z0-9.-]+\.[a-z]{2,}|principal(Set)?://[!-~]+"
AZURE_PRINCIPAL = r"((user|group|sp):)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
AZURE_PRINCIPAL_HINT = ("an Entra ID object id, optionally typed: 'user:<id>', 'group:<id>' or 'sp:<id>' (a service principal or managed "
                        "identity); an untyped id lets Azure work out its type")


def _matches(pattern: str, what: str, hint: str) -> Any:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{echo(value)} is not {what}{odd_character(value)}; use {hint}")
        return value
    return AfterValidator(check)


AwsPrincipal = Annotated[str, _matches(AWS_PRINCIPAL, "an AWS account or IAM principal",
                                       "a 12-digit account id, arn:aws:iam::<account>:root, or an IAM role or user ARN")]
GcpMember = Annotated[str, _matches(GCP_MEMBER, "a GCP IAM member",
                                    "user:, group: or serviceAccount:<e-mail>, domain:<domain>, or a principal:// / principalSet:// "
                                    "workload identity federation member (never allUsers)")]
AzurePrincipal = Annotated[str, _matches(AZURE_PRINCIPAL, "an Entra ID principal", AZURE_PRINCIPAL_HINT)]


class Producer(Strict):
    """An outside party (another account, project or tenant) that sends records or files into the pipeline."""

    sources: list[str] | None = Field(None, min_length=1, max_length=2, description=_SOURCES)

    def feeds(self, source: str) -> bool:
        return self.sources is None or source in self.sources


class AwsProducer(Producer):
    """Gets a role in the pipeline's account to assume (trusting exactly this principal), allowed only to write its sources."""

    principal: AwsPrincipal = Field(description="Who may assume the producer role: an account id or root ARN (the partner delegates "
                                                "inside their account), or one IAM role or user ARN.")
    external_id: str | None = Field(None, min_length=2, max_length=1224, pattern=r"^[A-Za-z0-9+=,.@:/_-]+$",
                                    description="Required in sts:AssumeRole (sts:ExternalId), as AWS advises for third parties.")


class GcpProducer(Producer):
    """Gets the write-only role on each source directly (topic publisher, object creator under the landing prefix)."""

    member: GcpMember = Field(description="An IAM member of any project or identity pool, e.g. serviceAccount:uploader@partner.iam.gserviceaccount.com.")


class AzureFederatedSubject(Strict):
    """A workload outside Azure (GitHub Actions, another cloud, Kubernetes) that signs in as the producer identity."""

    issuer: str = Field(pattern=r"^https://[!-~]+$", max_length=2048, description="The OIDC issuer URL of the outside workload's tokens.")
    subject: str = Field(min_length=1, max_length=600, pattern=r"^[!-~]+$", description="The token's subject claim, e.g. repo:org/repo:ref:refs/heads/main.")
    audience: str = Field("api://AzureADTokenExchange", min_length=1, max_length=600, description="The token's audience.")


class AzureProducer(Producer):
    """Either an Entra ID principal (a role assignment on each source) or an outside workload (a federated credential on
    the producer identity)."""

    principal: AzurePrincipal | None = Field(None, description=f"{AZURE_PRINCIPAL_HINT[0].upper()}{AZURE_PRINCIPAL_HINT[1:]}.")
    federated: AzureFederatedSubject | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AzureProducer:
        if (self.principal is None) == (self.federated is None):
            raise ValueError("a producer needs exactly one of 'principal' (an Entra ID object id) or 'federated' ({issuer, subject})")
        return self


_PRODUCERS = "Outside parties (other accounts, projects or tenants) that may write to the pipeline's sources, and nothing else."


class AwsSettings(Strict):
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region, e.g. us-east-1.")
    stream_mode: Literal["provisioned", "on_demand"] = Field("provisioned", description="Kinesis capacity mode.")
    http_invokers: list[str] = Field(default_factory=list, max_length=50, description=f"{_INVOKERS} IAM role or user ARNs.")
    producers: list[AwsProducer] = Field(default_factory=list, max_length=20, description=_PRODUCERS)
    reserved_concurrency: dict[str, Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=dict,
        description="Reserve (and cap) Lambda concurrency for these stages: {<stage>: N}. By default no function reserves any: a "
                    "reservation needs the account's concurrency quota to leave 100 unreserved, which new accounts (quota 10) do not.",
    )


class GcpSettings(Strict):
    project: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="GCP project ID (required to plan or deploy on GCP).")
    region: str = Field("us-central1", pattern=r"^[a-z]+-[a-z]+[0-9]{1,2}$", description="GCP region, e.g. us-central1 or europe-west10.")
    http_invokers: list[str] = Field(default_factory=list, max_length=50,
                                     description=f"{_INVOKERS} IAM members: user:..., group:..., serviceAccount:... (never allUsers).")
    producers: list[GcpProducer] = Field(default_factory=list, max_length=20, description=_PRODUCERS)


class AzureSettings(Strict):
    location: str = Field("eastus", pattern=r"^[a-z0-9]+$", description="Azure location, e.g. eastus.")
    http_invokers: list[AzurePrincipal] = Field(default_factory=list, max_length=50, description=f"{_INVOKERS} {AZURE_PRINCIPAL_HINT}.")
    producers: list[AzureProducer] = Field(default_factory=list, max_length=20, description=_PRODUCERS)


class CloudsSpec(Strict):
    aws: AwsSettings = Field(default_factory=AwsSettings)  # type: ignore[arg-type]
    gcp: GcpSettings = Field(default_factory=GcpSettings)  # type: ignore[arg-type]
    azure: AzureSettings = Field(default_factory=AzureSettings)  # type: ignore[arg-type]


class PipelineSpec(Strict):
    """A streaming ingestion -> preprocessing -> scoring pipeline, described once for every cloud."""

    name: str = Field(description=f"Pipeline name, used in every resource name: {NAME_HINT}.")
    description: str = Field("", max_length=256)
    stream: StreamSpec | None = Field(
        None, description="The managed stream records arrive on. Present by default; a pipeline fed only by `uploads` may leave it out.",
    )
    uploads: UploadsSpec | None = Field(None, description="A landing bucket outside producers drop files into (`uploads: {}` for the defaults).")
    stages: list[StageSpec] = Field(min_length=1, max_length=50)
    storage: StorageSpec = Field(default_factory=StorageSpec)  # type: ignore[arg-type]
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)  # type: ignore[arg-type]
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)  # type: ignore[arg-type]
    clouds: CloudsSpec = Field(default_factory=CloudsSpec)  # type: ignore[arg-type]
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, description="Tags / labels on every resource that takes them (GCP label rules).")

    @model_validator(mode="before")
    @classmethod
    def _default_stream(cls, data: Any) -> Any:
        """A spec without `stream:` keeps the default stream unless it has `uploads:` instead (then it has no stream)."""
        if isinstance(data, dict) and data.get("stream") is None and "stream" not in data and data.get("uploads") is None:
            return {**data, "stream": {}}
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, 3, 20, NAME_HINT)

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def consumers_of(self, source: str) -> list[StageSpec]:
        """Stages that read objects `source` (a stage or the uploads bucket) writes, on each object or on a schedule."""
        return [s for s in self.stages if s.trigger.source == source]

    @property
    def uploads_name(self) -> str | None:
        return self.uploads.name if self.uploads else None

    @property
    def workload_given(self) -> bool:
        """Whether the spec states its workload, or the comparison prices the documented defaults."""
        return "workload" in self.model_fields_set


def wiring_problems(spec: PipelineSpec) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Cross-field checks, each as (field path, message, hint), so errors point at the field."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    uploads = spec.uploads_name
    if spec.stream is None and spec.uploads is None:
        problems.append((("stream",), "a pipeline needs a source: a stream, an uploads bucket, or both",
                         "add 'stream: {}' for records, or 'uploads: {}' for files producers drop in"))
    if uploads in RESERVED_STAGE_NAMES:
        problems.append((("uploads", "name"), f"{uploads!r} is reserved for a pipeline bucket", "choose another name, e.g. 'uploads'"))
    seen: list[str] = []
    readable = [uploads] if uploads else []  # what an objects trigger or a schedule may read
    for index, stage in enumerate(spec.stages):
        at: tuple[str | int, ...] = ("stages", index)
        trigger = stage.trigger
        if stage.name in RESERVED_STAGE_NAMES:
            problems.append(((*at, "name"), f"stage name {stage.name!r} is reserved for a pipeline bucket", "choose another name"))
        if stage.name in seen:
            problems.append(((*at, "name"), f"stage name {stage.name!r} is used twice", "stage names must be unique"))
        if uploads and stage.name == uploads:
            problems.append(((*at, "name"), f"stage name {stage.name!r} is the uploads bucket's name", "rename the stage or set uploads.name"))
        if trigger.stream and spec.stream is None:
            problems.append(((*at, "trigger", "stream"), f"stage {stage.name!r} reads the stream, but this pipeline has none",
                             "add 'stream: {}' at the top level, or trigger the stage on objects from the uploads bucket"))
        source = trigger.source
        if source is not None and source not in readable:
            field_path = (*at, "trigger", "objects" if trigger.objects else "http" if trigger.http else "", "from")
            field_path = tuple(part for part in field_path if part != "")
            what = "an earlier stage that writes objects" + (f" or the uploads bucket {uploads!r}" if uploads else "")
            choices = ", ".join(readable) or "none: the first stage must read the stream, run on a schedule or serve HTTP"
            problems.append((field_path, f"stage {stage.name!r} reads objects from {echo(source)}, which is not {what}", f"can read: {choices}"))
        seen.append(stage.name)
        if stage.writes_objects:
            readable.append(stage.name)
    sources = (["stream"] if spec.stream is not None else []) + ([uploads] if uploads else [])
    for cloud in ("aws", "gcp", "azure"):
        for number, producer in enumerate(getattr(spec.clouds, cloud).producers):
            for position, source in enumerate(producer.sources or []):
                if source not in sources:
                    problems.append((("clouds", cloud, "producers", number, "sources", position), f"{echo(source)} is not a source of this pipeline",
                                     f"sources: {', '.join(sources)}"))
    for name in sorted(set(spec.clouds.aws.reserved_concurrency) - set(seen)):
        problems.append((("clouds", "aws", "reserved_concurrency", name), f"{echo(name)} is not a stage", f"stages: {', '.join(seen)}"))
    for name in sorted(set(spec.workload.stages) - set(seen)):
        problems.append((("workload", "stages", name), f"{echo(name)} is not a stage", f"stages: {', '.join(seen)}"))
    for stage in spec.stages:
        work = spec.workload.stages.get(stage.name)
        if work is not None and work.requests_per_second is not None and not stage.trigger.http:
            problems.append((("workload", "stages", stage.name, "requests_per_second"),
                             f"stage {stage.name!r} is not an HTTP stage, so it receives no requests",
                             "leave requests_per_second out (stream, object and schedule stages are driven by the stream, "
                             "their source's objects or their schedule)"))
    return problems

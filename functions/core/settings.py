"""The control plane's one settings object, read once per process (env vars, then `.env`).

Seed variable names keep working: MONGODB_URL, DATABASE_NAME, REDIS_HOST/PORT/USERNAME/PASSWORD or REDIS_URL,
AWS_BUCKET_NAME, AWS_REGION, PORT, DFS_BASE_PATH, RAY_HEAD_ADDRESS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.core import names
from functions.core.backends import BACKENDS  # the table only: no backend module is imported here

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    environment: str = Field("local", description="Deployment environment name (local, dev, prod).")

    # MongoDB: MONGODB_URL names a server; unset, the embedded montydb store under MINISTUDIO_DATA_DIR (durable),
    # or without a data directory an in-process store that is not (tests).
    mongodb_url: str | None = None
    mongodb_url_secret_arn: str | None = None  # in AWS: Secrets Manager holds the URL; read when settings are built
    database_name: str = "mini_studio"
    # The local platform's state: documents, S3/SQS (moto's recording), Redis's AOF, runs, servers, credentials.
    # `make run` defaults it to .ministudio/data; unset elsewhere (AWS keeps state in its own services).
    ministudio_data_dir: str | None = None

    # Redis: REDIS_URL wins over the seed's host/port/username/password.
    redis_url: str | None = None
    redis_url_secret_arn: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_timeout_seconds: float = 0.5

    # AWS
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_bucket_name: str = names.DATASETS_BUCKET
    artifacts_bucket_name: str | None = None
    ingest_queue_url: str | None = None
    dispatch_queue_url: str | None = None
    status_queue_url: str | None = None

    # Control plane
    port: int = 8000
    dfs_base_path: str | None = None
    ray_head_address: str | None = None
    # A key of functions.core.backends.BACKENDS (the one registration). Unset: `ray` when RAY_HEAD_ADDRESS is set
    # (seed 000: the address alone selects Ray), else `local`.
    compute_backend: str = "local"
    # Seed 000's FINETUNING_SCRIPT_PATH: the training entrypoint the local and Ray backends run (a command line).
    finetuning_script_path: str = Field("ministudio-train", min_length=1)
    admin_api_key: SecretStr | None = None
    admin_api_key_secret_arn: str | None = None
    # Secrets Manager values are cached this long per container (functions/core/secrets.py): a rotated admin key
    # takes effect within it; connection URLs and the inference key are read when the settings are built.
    secrets_max_age_seconds: int = Field(300, ge=0)
    log_dir: str | None = None
    log_level: str = "INFO"
    public_base_url: str | None = None
    # The web console: its built files (default console/dist in the checkout, served at /console when present) and
    # the browser origins allowed to call the API (CORS; JSON list), e.g. the console's CloudFront URL in AWS.
    console_dir: str | None = None
    console_origins: list[str] = []

    # Fine-tuning
    base_models: list[str] = Field(
        default_factory=lambda: ["HuggingFaceTB/SmolLM2-135M-Instruct"],
        description="Base models tenants may fine-tune and deploy (JSON list in the environment).",
    )
    job_max_runtime_seconds: int = 24 * 3600
    reconcile_stale_seconds: int = 120  # a queued/dispatching job untouched this long is re-sent
    reconcile_silent_seconds: int = 900  # a running job with no progress this long is checked with its backend

    # Compute backends (functions/compute): `local` runs the trainer as a subprocess, `ray` submits Ray jobs.
    cancel_grace_seconds: float = 30.0  # SIGTERM to SIGKILL: the trainer saves a checkpoint in between
    local_runs_dir: str | None = None  # one folder per run; default ~/.cache/ministudio/runs
    local_max_concurrent_jobs: int = Field(1, ge=1)  # more runs wait in a FIFO queue
    local_run_threads: int | None = None  # OMP/MKL threads per run; default: usable CPUs / concurrent runs
    local_run_nice: int = Field(10, ge=0, le=19)  # the API stays responsive while a run trains
    local_run_memory_limit_mb: int | None = None  # RLIMIT_AS per run; off by default (CUDA needs huge address space)
    # Extra variables a local trainer or inference server inherits beyond subprocs.CHILD_ENV_NAMES (JSON list).
    local_child_env_passthrough: list[str] = []
    ray_request_timeout_seconds: float = 10.0
    ray_entrypoint_num_cpus: float = 1.0  # reserved for the trainer process on the Ray cluster
    ray_entrypoint_num_gpus: float = 0.0
    ray_runtime_env: dict[str, Any] = {}  # merged into each job's runtime_env (JSON)
    ray_env_passthrough: list[str] = Field(
        default_factory=lambda: ["MINISTUDIO_PROGRESS_INTERVAL"],
        description="Variables copied from this process into each Ray job (JSON list). AWS region and endpoint come "
        "from settings; credentials come from the cluster (a pod role), since the dashboard shows job env vars.",
    )

    # Serving (functions/compute/serving.py): deployments of `ministudio-serve`.
    inference_api_key: SecretStr | None = None  # the one server key the control plane holds (seed 002's API_KEY)
    inference_api_key_secret_arn: str | None = None
    local_serving_dir: str | None = None  # one folder per local deployment; default ~/.cache/ministudio/serving
    local_serving_threads: int | None = None  # torch threads per local inference server
    # One pre-imported standby server (functions/compute/local_serving_standby.py): wake-ups skip Python's imports.
    local_serving_standby: bool = False
    serving_ready_timeout_seconds: int = 900  # a deployment not ready by then is failed
    # A local inference server that exits after having been ready is restarted (with its adapters) this many times
    # in a row, the first after the backoff, each next after twice the last; one that then stayed up for the window
    # starts the count afresh. Past the limit its deployment fails.
    serving_restart_limit: int = Field(3, ge=0)
    serving_restart_backoff_seconds: float = Field(1.0, ge=0)
    serving_restart_window_seconds: float = Field(300.0, ge=0)
    proxy_timeout_seconds: float = 300.0
    routing_cache_ttl_seconds: int = 60
    # Scale to zero (functions/deployments/idle.py, wake.py): a deployment with min_replicas 0 goes `idle` after its
    # `idle_seconds` (this default) without requests; the proxy holds a request to an idle deployment up to
    # WAKE_TIMEOUT_SECONDS while one server starts, then answers it (or 503 with the reason).
    deployment_idle_seconds: int = Field(900, ge=10, le=7 * 86400)
    wake_timeout_seconds: float = Field(120.0, gt=0, le=900)

    # Local monitoring (functions/local/prometheus.py): `ministudio run --prometheus` starts a Prometheus that scrapes
    # the API and every local inference server; servers announce themselves as file_sd targets under this folder.
    local_prometheus: bool = False
    local_prometheus_port: int = Field(9090, ge=0, le=65535)  # 0: any free port
    local_prometheus_dir: str | None = None  # config, targets/ and data/; default ~/.cache/ministudio/prometheus

    # GPU backends (#7): EKS and SageMaker. The CDK stacks set these from their outputs.
    trainer_image_uri: str | None = None
    inference_image_uri: str | None = None
    eks_cluster_name: str | None = None
    eks_namespace: str = "ministudio"
    eks_rayjob_retries: int = Field(2, ge=0, le=10)  # new Ray clusters for a run whose pods were evicted or lost
    eks_service_account: str = "ministudio-workload"
    keda_prometheus_url: str = "http://prometheus-server.monitoring.svc.cluster.local:80"
    # Pod sizes fit the default GPU node types (g6/g5.xlarge: 4 vCPU, 16 GiB, one GPU) after system daemons.
    eks_training_gpus: int = Field(1, ge=0)  # nvidia.com/gpu per RayJob: the trainer is one process on one node
    eks_training_cpu: str = "3"
    eks_training_memory: str = "12Gi"
    eks_job_ttl_seconds: int = Field(3600, ge=0)  # RayJob ttlSecondsAfterFinished: its Ray cluster goes after this
    eks_serving_cpu: str = "3"
    eks_serving_memory: str = "12Gi"
    # Tabular deployments (seed 004's classical models) need no GPU: a CPU pod on nodes this selector picks (JSON;
    # GPU nodes are tainted, so a pod without the GPU toleration never lands there anyway).
    eks_cpu_node_selector: dict[str, str] = Field(default_factory=lambda: {"kubernetes.io/arch": "amd64"})
    eks_tabular_cpu: str = "1"
    eks_tabular_memory: str = "2Gi"
    keda_cooldown_seconds: int = Field(300, ge=0)  # idle time before KEDA scales a zero-minimum deployment to zero
    # KEDA's Redis scaler reads the list of requests the proxy holds for a deployment at zero (host:port of the
    # control plane's Redis as the cluster reaches it); unset: no Redis trigger, only Prometheus (no wake from zero).
    keda_redis_address: str | None = None
    sagemaker_execution_role_arn: str | None = None
    sagemaker_training_instance_type: str = "ml.g5.2xlarge"
    sagemaker_inference_instance_type: str = "ml.g5.2xlarge"
    sagemaker_cpu_inference_instance_type: str = "ml.m5.xlarge"  # tabular deployments: no GPU
    sagemaker_use_spot: bool = False

    # Tenancy
    tenant_cache_ttl_seconds: int = 60
    rate_limit_per_minute: int = 600
    # How long a revoke or config change retries writing its cache tombstone before answering 503 (nothing changed).
    cache_invalidation_timeout_seconds: float = Field(3.0, ge=0)

    # Datasets
    max_upload_bytes: int = 512 * MiB  # request bodies of upload routes
    max_request_bytes: int = 1 * MiB  # every other request body
    request_body_timeout_seconds: float = Field(30.0, gt=0)  # a body that sends nothing this long gets a 408
    max_dataset_bytes: int = 5 * 1024 * MiB  # presigned uploads and dropped files
    max_line_bytes: int = 4 * MiB
    min_examples: int = 10
    max_validation_errors: int = 50
    upload_expiry_seconds: int = 3600
    upload_part_max_bytes: int = 64 * MiB
    # Completing an upload copies its parts inside S3; parts under S3's 5 MiB minimum are read through the API,
    # at most this many bytes per upload (and md5 is checked only for uploads this small).
    upload_read_through_max_bytes: int = 64 * MiB

    @field_validator("mongodb_url", "redis_url", "aws_endpoint_url", "dfs_base_path", "redis_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("compute_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:

        if value not in BACKENDS:
            raise ValueError(f"unknown compute backend {value!r}; choose one of {sorted(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _ray_from_address(self) -> Settings:
        if "compute_backend" not in self.model_fields_set and self.ray_head_address:
            self.compute_backend = "ray"
        return self

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        # Only in AWS (the stacks pass ARNs, never the URLs): Powertools and boto3 load only when an ARN is set.
        if self.mongodb_url is None and self.mongodb_url_secret_arn:
            self.mongodb_url = self.secret(self.mongodb_url_secret_arn)
        if self.redis_url is None and self.redis_url_secret_arn:
            self.redis_url = self.secret(self.redis_url_secret_arn)
        if self.inference_api_key is None and self.inference_api_key_secret_arn:
            key = self.secret(self.inference_api_key_secret_arn)
            self.inference_api_key = SecretStr(key) if key else None
        return self

    def secret(self, arn: str) -> str | None:
        """A Secrets Manager value, cached for `secrets_max_age_seconds` (the one way secrets are read)."""
        from functions.core import secrets

        return secrets.read(arn, self.aws_region, self.secrets_max_age_seconds)

    @property
    def artifacts_bucket(self) -> str:
        return self.artifacts_bucket_name or self.aws_bucket_name

    @property
    def redis_dsn(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            return None
        auth = ""
        if self.redis_username or self.redis_password:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f"{quote(self.redis_username or '', safe='')}:{quote(password, safe='')}@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

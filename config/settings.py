"""Settings, read from environment variables (README has the table).

With nothing set, the app runs on SQLite under VAR_DIR and a Celery broker on the filesystem,
so `make run` needs no database or broker server. DJANGO_ENV=production turns on the
deployment hardening and refuses to start without SECRET_KEY and ALLOWED_HOSTS.
"""

import os
import secrets
import time
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false)")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use development or production")
PRODUCTION = DJANGO_ENV == "production"

# Uploaded files, the embedded database and broker, exports and model artifacts live here.
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)



def development_secret(var_dir: Path) -> str:
    """This deployment's own key, made on first run and kept in VAR_DIR (owner-only): a key
    everyone knows would let anyone forge sessions and reverse export pseudonyms."""
    path = var_dir / "secret_key"
    for _ in range(50):
        if path.exists() and (key := path.read_text().strip()):
            return key
        try:  # O_EXCL: of two processes starting at once, one writes, the other reads it
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            time.sleep(0.05)  # the other process is writing it
            continue
        key = secrets.token_urlsafe(50)
        with os.fdopen(handle, "w") as out:
            out.write(key)
        return key
    raise ImproperlyConfigured(f"{path} stays empty: delete it, or set SECRET_KEY")


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set in the environment in production")
    SECRET_KEY = development_secret(VAR_DIR)

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in the environment in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: no CDN
    "annotate",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # JIT compiling a short labeling query costs more than running it (25 ms of 40 measured
    # on next-prompt): these are OLTP queries, so JIT is off for the app's connections.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
    if os.environ.get("DATABASE_PREPARED", "1") == "1":
        # Server-side binding lets psycopg prepare a statement on its third run on a
        # connection, so it is no longer parsed and planned per request (planning was half
        # the database's CPU of a ranking). A prepared statement keeps its plan until the
        # next ANALYZE of its tables, so config/prepared_plans.py drops a connection's plans
        # once they are DATABASE_PLAN_MAX_AGE_SECONDS old: a plan made while the assignments
        # were few scanned them all per candidate, 27 ms a call, while autovacuum was off
        # (bench/README.md). Django also needs prepare_threshold named, or it passes None and
        # nothing is prepared. DATABASE_PREPARED=0 behind a transaction-mode pooler
        # (PgBouncer before 1.21, or without max_prepared_statements).
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share the file: WAL lets readers go on while one writes,
    # IMMEDIATE takes the write lock up front so two writers wait instead of deadlocking.
    # Connections are kept (DB_CONN_MAX_AGE), as on PostgreSQL: opening one per request,
    # with its PRAGMAs and Django's SQL functions, cost 0.84 ms of CPU (bench/README.md).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# PostgreSQL: how long a connection keeps its prepared statements (config/prepared_plans.py).
DATABASE_PLAN_MAX_AGE_SECONDS = float(os.environ.get("DATABASE_PLAN_MAX_AGE_SECONDS", 10))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Login throttle (annotate/services/auth.py): failures are database rows, shared by every web
# process. Past a limit within the window, the login page and the token endpoint answer 429.
LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60))
# An API token works this long after it was issued (0: for ever); DELETE /api/auth/token/
# revokes the caller's token at once.
API_TOKEN_TTL_SECONDS = int(os.environ.get("API_TOKEN_TTL_SECONDS", 30 * 24 * 3600))
# An invitation link (a project admin's way to let someone set their password) works this
# long, and once.
INVITATION_MAX_AGE_SECONDS = int(os.environ.get("INVITATION_MAX_AGE_SECONDS", 3 * 24 * 3600))
LOGIN_FAILURES_PER_USERNAME = int(os.environ.get("LOGIN_FAILURES_PER_USERNAME", 20))
LOGIN_FAILURES_PER_IP = int(os.environ.get("LOGIN_FAILURES_PER_IP", 100))
# Behind the reverse proxy (production), the client is the last X-Forwarded-For entry.
LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR = env_bool("LOGIN_CLIENT_IP_FROM_X_FORWARDED_FOR",
                                                default=PRODUCTION)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Built by collectstatic from the code, so beside it, not in VAR_DIR (a volume in docker/).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# Imports: the largest upload accepted, and the most bytes a gzip file may expand to.
IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES", str(512 * 1024 * 1024)))
# The longest line of an import file: a longer one is skipped unread and reported.
IMPORT_MAX_LINE_BYTES = int(os.environ.get("IMPORT_MAX_LINE_BYTES", str(8 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# First, the limit: an upload over IMPORT_MAX_BYTES is refused before it is read.
FILE_UPLOAD_HANDLERS = [
    "annotate.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotate.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only (one schema per operation, which generated clients can use); the
    # import endpoint, which takes a file, declares multipart itself.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Documents each operation's error answers (config/schema.py).
    "DEFAULT_SCHEMA_CLASS": "config.schema.ErrorDocumentingSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # Application errors raised by services become answers here, one status per type.
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "rlhf-studio API",
    "DESCRIPTION": "Rank completions, build preference datasets, train reward models.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ (Swagger UI) and /api/redoc/ load their scripts from our static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "kind" or a "status": name each set of choices after its model.
    "ENUM_NAME_OVERRIDES": {
        # Exports and imports share theirs.
        "RunStatusEnum": "annotate.models.RunStatus",
        "TrainingJobStatusEnum": "training.models.TrainingJob.Status",
        "ModelArtifactKindEnum": "training.models.ModelArtifact.Kind",
    },
}

# Celery: a broker that needs no server unless CELERY_BROKER_URL says otherwise.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # CELERY_BROKER_DIR moves the folders elsewhere: each test run has its own.
    _broker_dir = Path(os.environ.get("CELERY_BROKER_DIR") or VAR_DIR / "broker").resolve()
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # else kombu writes ./control/
        "store_processed": False,
        "polling_interval": 0.5,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged task goes back to the queue after this long: longer than any job.
    # A job whose worker died is found sooner by the reaper (the heartbeat below).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 48 * 3600)),
        # A broker that hangs (a stopped process, a half-open connection) must not hang the
        # request that sends a job: without these a publish waits on the socket forever.
        # The job stays queued and the minute tick sends it later.
        "socket_timeout": float(os.environ.get("CELERY_BROKER_SOCKET_TIMEOUT", 5)),
        "socket_connect_timeout": float(os.environ.get("CELERY_BROKER_SOCKET_TIMEOUT", 5)),
        # Every key this app makes starts with this: deployments (or test runs) that share a
        # Redis database never see each other's messages.
        "global_keyprefix": os.environ.get("CELERY_BROKER_KEY_PREFIX", ""),
    }
# Job state lives in the database (the TrainingJob row), never in Celery's result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.job_run": {"queue": "gpu"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Beat (`celery worker -B`, or `celery beat`) runs the reaper of jobs whose worker is gone.
# It also sends the jobs, exports and imports that were requested while the broker was down.
CELERY_TICK_SECONDS = float(os.environ.get("CELERY_TICK_SECONDS", 60))
CELERY_BEAT_SCHEDULE = {
    "reap-training-jobs": {"task": "training.jobs_reap", "schedule": CELERY_TICK_SECONDS},
    "reap-exports": {"task": "annotate.exports_reap", "schedule": CELERY_TICK_SECONDS},
    "reap-imports": {"task": "annotate.prompt_imports_reap", "schedule": CELERY_TICK_SECONDS},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Training jobs: a running job without a heartbeat for this long has lost its worker.
TRAINING_HEARTBEAT_STALE_SECONDS = int(os.environ.get("TRAINING_HEARTBEAT_STALE_SECONDS", 120))
TRAINING_MAX_ACTIVE_JOBS = int(os.environ.get("TRAINING_MAX_ACTIVE_JOBS", 4))
# The base-model catalog (training.catalog): folders that hold models, and the hub names a
# job may name. Requests never name a path; MODEL_HUB_ANY lets any hub name through.
# A model asked for is checked (config and tokenizer) in a child process, within this time.
MODEL_CHECK_TIMEOUT_SECONDS = int(os.environ.get("MODEL_CHECK_TIMEOUT_SECONDS", 120))
MODEL_ROOTS = [Path(p) for p in os.environ.get("MODEL_ROOTS", str(VAR_DIR / "models")).split(
    os.pathsep) if p]
MODEL_HUB_NAMES = [n.strip() for n in os.environ.get("MODEL_HUB_NAMES", "").split(",")
                   if n.strip()]
# Scoring on request: a model loads in the background; a request waits this long for it,
# then answers 503 with Retry-After while it loads.
SCORER_LOAD_WAIT_SECONDS = float(os.environ.get("SCORER_LOAD_WAIT_SECONDS", "1"))
MODEL_HUB_ANY = os.environ.get("MODEL_HUB_ANY", "false").lower() in ("1", "true", "yes")
# Exports: the same for an export's builder; at most this many queued or building per project.
EXPORT_HEARTBEAT_STALE_SECONDS = int(os.environ.get("EXPORT_HEARTBEAT_STALE_SECONDS", 120))
EXPORT_MAX_ACTIVE = int(os.environ.get("EXPORT_MAX_ACTIVE", 4))
# A large export is built in this many processes (annotate/services/export_parts.py): the
# parent and forked children each write a range of prompts; the bytes are those of one.
EXPORT_WORKERS = int(os.environ.get("EXPORT_WORKERS", min(2, os.cpu_count() or 1)))
EXPORT_PART_TIMEOUT_SECONDS = float(os.environ.get("EXPORT_PART_TIMEOUT_SECONDS", 3600))
# Imports: uploads are imported on a worker (queue "default"); the same for their importer.
IMPORT_HEARTBEAT_STALE_SECONDS = int(os.environ.get("IMPORT_HEARTBEAT_STALE_SECONDS", 120))
IMPORT_MAX_ACTIVE = int(os.environ.get("IMPORT_MAX_ACTIVE", 4))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

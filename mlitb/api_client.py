"""The master's HTTP API from Python: what `mlitb project`, `mlitb data` and `mlitb worker` call.

Every failure becomes one `ApiError` whose message names the server that
answered (or did not) and what to do, so the CLI prints one line instead of a
traceback. A wrong port is told apart from a data server's port and from a
server that is not there at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote, urljoin, urlsplit

import httpx

LOCAL_MASTER = "http://127.0.0.1:8000"
DATA_PATH = "/data"  # where `mlitb serve` mounts the data API by default (master/one_origin.py)


class ApiError(Exception):
    """A request that failed; the message is one line a person can act on."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def check_base_url(url: str, what: str = "--master") -> str:
    """`url` without a trailing slash; ApiError when it is not an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(f"{what} {url!r} is not a URL: write it with its scheme, e.g. http://{url.split('://')[-1] or '127.0.0.1:8000'}")
    if parts.query or parts.fragment:
        raise ApiError(f"{what} {url!r} has a query or fragment: give the base URL, {parts.scheme}://{parts.netloc} "
                       "(a project goes in --project ID)")
    return url.rstrip("/")


def error_text(response: httpx.Response) -> str:
    """The server's `{"error": ...}` message, or the start of whatever it answered."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"]) + (f" (file: {body['file']})" if body.get("file") else "")
    return json.dumps(body)[:200]


@dataclass
class MasterClient:
    """Synchronous client of one master (`url`), with the admin token when one is known."""

    url: str
    token: str | None = None
    timeout_s: float = 30.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = check_base_url(self.url)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests ----

    def request(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> httpx.Response:
        """`method path`; ApiError for no answer, a refused token or any 4xx/5xx, naming this master."""
        headers = kwargs.pop("headers", {})
        if admin:
            if not self.token:
                raise ApiError("this needs the admin token: pass --token, set MLITB_ADMIN_TOKEN, or run on the "
                               "machine of `mlitb serve` (it writes DATA_DIR/admin-token)")
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError as exc:
            raise ApiError(f"nothing answers at {self.url} ({_reason(exc)}): is `mlitb serve` running there, and is "
                           "the port right? (--master URL or MLITB_MASTER_URL)") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"the master at {self.url} did not answer {method} {path}: {_reason(exc)}") from None
        if response.status_code == 401:
            raise ApiError(f"the master at {self.url} refused the admin token: use the one `mlitb serve` printed "
                           "(--token, MLITB_ADMIN_TOKEN or DATA_DIR/admin-token)", 401)
        if response.status_code >= 400:
            raise ApiError(f"the master at {self.url} answered {response.status_code}: {error_text(response)}",
                           response.status_code)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{self.url}{path} answered something that is not JSON: is {self.url} an mlitb master?") from None

    def config(self) -> dict[str, Any]:
        """`/api/config`; a data server's or a stranger's port is named as such."""
        try:
            config = self.json("GET", "/api/config")
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(self._not_a_master()) from None
            raise
        if not isinstance(config, dict) or "data_url" not in config:
            raise ApiError(self._not_a_master())
        return config

    def _not_a_master(self) -> str:
        try:
            health = self._http.get("/healthz").json()
        except (httpx.HTTPError, ValueError):
            health = None
        if isinstance(health, dict) and health.get("ok") and "projects" not in health:
            return (f"{self.url} is an mlitb data server, not the master: give the master's URL "
                    "(the one `mlitb serve` prints first)")
        return f"{self.url} is not an mlitb master (no /api/config there): check the port"

    def projects(self) -> list[dict[str, Any]]:
        return self.json("GET", "/api/projects")

    def project(self, project_id: str) -> dict[str, Any]:
        return self._on_project("GET", project_id, "")

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/api/projects", admin=True, json=body)

    def create_from_closure(self, closure: bytes) -> dict[str, Any]:
        return self.json("POST", "/api/projects/from-closure", admin=True, content=closure,
                         headers={"Content-Type": "application/json"})

    def action(self, project_id: str, action: str) -> dict[str, Any]:
        return self._on_project("POST", project_id, f"/{action}", admin=True)

    def patch(self, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._on_project("PATCH", project_id, "", admin=True, json=body)

    def delete(self, project_id: str) -> None:
        self._on_project("DELETE", project_id, "", admin=True)

    def closure(self, project_id: str) -> bytes:
        return self._on_project("GET", project_id, "/closure", raw=True)

    def metrics(self, project_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self._on_project("GET", project_id, "/metrics", params={"since": since})

    def _on_project(self, method: str, project_id: str, suffix: str, raw: bool = False, **kwargs: Any) -> Any:
        """A request on one project; a 404 says which project is missing and how to list them."""
        path = f"/api/projects/{quote(project_id, safe='')}{suffix}"
        try:
            return self.request(method, path, **kwargs).content if raw else self.json(method, path, **kwargs)
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(f"the master at {self.url} has no project {project_id!r}: "
                               "`mlitb project list` shows the ones it has", 404) from None
            raise

    def data_url(self) -> str:
        """The data server the master gives to workers, as an absolute URL.

        In the one-port setup (a data URL ending in /data) the data API is on
        the master's own origin, so it is reached through the URL this client
        reached the master at: right even when the public URL is a proxy's
        that this machine cannot see.
        """
        given = str(self.config()["data_url"]).rstrip("/")
        if given == DATA_PATH or given.endswith(DATA_PATH):
            return self.url + DATA_PATH
        return urljoin(self.url + "/", given)


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text.splitlines()[0]

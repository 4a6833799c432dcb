"""The Zendesk Help Center of each tenant, read from a folder of Markdown articles.

Each file is YAML front matter then Markdown:

    ---
    id: 360001001          # integer, required
    title: Replace a lost card
    intents: [lost_or_stolen_card]
    updated_at: 2026-01-15T10:00:00Z
    review_by: 2026-07-01
    is_policy: false
    locale: en-us
    ---
    If your card is lost ...

Served (with the Zendesk server's auth) as the Help Center API serves articles:
`GET /api/v2/help_center[/{locale}]/articles.json?page=&per_page=&sort_by=&sort_order=` (offset
pagination), `GET /api/v2/help_center[/{locale}]/articles/{id}.json`, the incremental export
`GET /api/v2/help_center/incremental/articles.json?start_time=<unix>`, and
`DELETE /api/v2/help_center/articles/{id}.json`. `GET /hc/{locale}/articles/{id}[-slug]` shows an
article as a page (public, like a help center). `POST /_sim/help_center/touch` edits an article and
bumps its updated_at to now, as an editor would.
"""

from __future__ import annotations

import html as html_lib
import logging
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlencode

import markdown
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tooling.channel_servers.control_api import BodyError, json_object
from tooling.channel_servers.store import iso_seconds, whole_seconds

log = logging.getLogger("channel_servers.help_center")

DEFAULT_LOCALE = "en-us"
DEFAULT_SECTION_ID = 360000000001
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
INCREMENTAL_PAGE = 1000
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)


class HelpCenterError(ValueError):
    """An article file the help center cannot serve; names the file and the problem."""


@dataclass
class Article:
    id: int
    title: str
    body_markdown: str
    locale: str
    intents: tuple[str, ...]
    is_policy: bool
    review_by: str  # YYYY-MM-DD or ""
    created_at: datetime
    updated_at: datetime
    section_id: int
    author_id: int

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.title).strip("-")

    @property
    def label_names(self) -> list[str]:
        labels = [f"intent:{intent}" for intent in self.intents]
        if self.is_policy:
            labels.append("policy")
        if self.review_by:
            labels.append(f"review-by:{self.review_by}")
        return labels

    def body_html(self) -> str:
        return markdown.markdown(self.body_markdown, extensions=["extra", "sane_lists"])


def read_articles(folder: str, author_id: int) -> dict[int, Article]:
    if not folder:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise HelpCenterError(f"help center folder {folder} does not exist")
    articles: dict[int, Article] = {}
    for path in sorted(root.glob("*.md")):
        article = read_article(path, author_id)
        if article.id in articles:
            raise HelpCenterError(f"{path}: article id {article.id} is used by another file too")
        articles[article.id] = article
    log.info("help center %s: %d articles", folder, len(articles))
    return articles


def read_article(path: Path, author_id: int) -> Article:
    match = _FRONT_MATTER.match(path.read_text(encoding="utf-8"))
    if match is None:
        raise HelpCenterError(f"{path}: an article starts with YAML front matter between '---' lines")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise HelpCenterError(f"{path}: front matter is not YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise HelpCenterError(f"{path}: front matter must be a mapping")
    article_id = meta.get("id")
    if not isinstance(article_id, int) or isinstance(article_id, bool) or article_id <= 0:
        raise HelpCenterError(f"{path}: id must be a positive integer, not {article_id!r}")
    title = str(meta.get("title") or "").strip()
    if not title:
        raise HelpCenterError(f"{path}: title is missing")
    intents = meta.get("intents") or []
    if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
        raise HelpCenterError(f"{path}: intents must be a list of names")
    updated_at = _moment(meta.get("updated_at"), path, "updated_at") or whole_seconds(
        datetime.fromtimestamp(int(path.stat().st_mtime), timezone.utc))
    created_at = _moment(meta.get("created_at"), path, "created_at") or updated_at
    review_by = meta.get("review_by") or ""
    if isinstance(review_by, datetime):
        review_by = review_by.date()
    if isinstance(review_by, date):
        review_by = review_by.isoformat()
    return Article(
        id=article_id, title=title, body_markdown=match.group(2).strip() + "\n",
        locale=str(meta.get("locale") or DEFAULT_LOCALE).lower(), intents=tuple(intents),
        is_policy=bool(meta.get("is_policy", False)), review_by=str(review_by), created_at=created_at,
        updated_at=updated_at, section_id=int(meta.get("section_id") or DEFAULT_SECTION_ID), author_id=author_id,
    )


def _moment(value: object, path: Path, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise HelpCenterError(f"{path}: {name} is not an ISO date-time: {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return whole_seconds(moment.astimezone(timezone.utc))


class HelpCenter:
    """One tenant's articles; deleted ones are gone from every listing."""

    def __init__(self, folder: str, author_id: int) -> None:
        self.folder = folder
        self.articles = read_articles(folder, author_id)

    def live(self, locale: str | None = None) -> list[Article]:
        return [a for a in self.articles.values() if locale is None or a.locale == locale.lower()]

    def delete(self, article_id: int) -> bool:
        return self.articles.pop(article_id, None) is not None

    def touch(self, article_id: int, *, title: str | None = None, body_markdown: str | None = None) -> Article | None:
        article = self.articles.get(article_id)
        if article is None:
            return None
        if title:
            article.title = title
        if body_markdown is not None:
            article.body_markdown = body_markdown
        article.updated_at = whole_seconds()
        log.info("help center: article %d touched (updated_at %s)", article_id, iso_seconds(article.updated_at))
        return article


def article_json(article: Article, base_url: str) -> dict:
    return {
        "id": article.id,
        "url": f"{base_url}/api/v2/help_center/{article.locale}/articles/{article.id}.json",
        "html_url": f"{base_url}/hc/{article.locale}/articles/{article.id}-{article.slug}",
        "author_id": article.author_id,
        "comments_disabled": True,
        "draft": False,
        "promoted": False,
        "position": 0,
        "vote_sum": 0,
        "vote_count": 0,
        "section_id": article.section_id,
        "created_at": iso_seconds(article.created_at),
        "updated_at": iso_seconds(article.updated_at),
        "edited_at": iso_seconds(article.updated_at),
        "name": article.title,
        "title": article.title,
        "source_locale": article.locale,
        "locale": article.locale,
        "outdated": False,
        "outdated_locales": [],
        "permission_group_id": 1,
        "user_segment_id": None,
        "label_names": article.label_names,
        "content_tag_ids": [],
        "body": article.body_html(),
    }


# request -> the tenant's HelpCenter, or the Zendesk error response (401/403) to send instead
Authorizer = Callable[[Request], Awaitable["HelpCenter | Response"]]
_SORT_KEYS = {
    "position": lambda a: a.id,
    "title": lambda a: (a.title.lower(), a.id),
    "created_at": lambda a: (a.created_at, a.id),
    "updated_at": lambda a: (a.updated_at, a.id),
}


def help_center_routes(base_url: str, authorize: Authorizer, centers: dict[str, HelpCenter],
                       not_found: Callable[[], Response]) -> list[Route]:
    """The Help Center API routes of the Zendesk server, and the /_sim/help_center/touch control."""

    async def list_articles(request: Request) -> Response:
        center = await authorize(request)
        if not isinstance(center, HelpCenter):
            return center
        locale = request.path_params.get("locale")
        try:
            page = int(request.query_params.get("page", "1"))
            per_page = min(int(request.query_params.get("per_page", str(DEFAULT_PER_PAGE))), MAX_PER_PAGE)
        except ValueError:
            return _invalid("page and per_page must be integers")
        if page < 1 or per_page < 1:
            return _invalid("page and per_page must be at least 1")
        sort_by = request.query_params.get("sort_by", "position")
        sort_order = request.query_params.get("sort_order", "asc")
        if sort_by not in _SORT_KEYS or sort_order not in ("asc", "desc"):
            return _invalid(f"sort_by is one of {', '.join(_SORT_KEYS)}; sort_order asc or desc")
        articles = sorted(center.live(locale), key=_SORT_KEYS[sort_by], reverse=sort_order == "desc")
        count = len(articles)
        page_count = math.ceil(count / per_page)
        shown = articles[(page - 1) * per_page: page * per_page]
        path = f"/api/v2/help_center/{locale}/articles.json" if locale else "/api/v2/help_center/articles.json"

        def page_url(number: int) -> str:
            params = {"page": number, "per_page": per_page}
            if sort_by != "position" or sort_order != "asc":
                params |= {"sort_by": sort_by, "sort_order": sort_order}
            return f"{base_url}{path}?{urlencode(params)}"

        return JSONResponse({
            "articles": [article_json(a, base_url) for a in shown],
            "count": count, "page": page, "per_page": per_page, "page_count": page_count,
            "next_page": page_url(page + 1) if page < page_count else None,
            "previous_page": page_url(page - 1) if page > 1 else None,
            "sort_by": sort_by, "sort_order": sort_order,
        })

    async def show_article(request: Request) -> Response:
        center = await authorize(request)
        if not isinstance(center, HelpCenter):
            return center
        article = center.articles.get(request.path_params["article_id"])
        locale = request.path_params.get("locale")
        if article is None or (locale and article.locale != locale.lower()):
            return not_found()
        return JSONResponse({"article": article_json(article, base_url)})

    async def delete_article(request: Request) -> Response:
        center = await authorize(request)
        if not isinstance(center, HelpCenter):
            return center
        if not center.delete(request.path_params["article_id"]):
            return not_found()
        log.info("help center: article %d deleted", request.path_params["article_id"])
        return Response(status_code=204)

    async def incremental_articles(request: Request) -> Response:
        center = await authorize(request)
        if not isinstance(center, HelpCenter):
            return center
        try:
            start_time = int(request.query_params["start_time"])
            per_page = int(request.query_params.get("per_page", str(INCREMENTAL_PAGE)))
        except KeyError:
            return _invalid("start_time (Unix seconds) is required")
        except ValueError:
            return _invalid("start_time and per_page must be integers")
        if per_page < 1:
            return _invalid("per_page must be at least 1")
        changed = sorted((a for a in center.live() if a.updated_at.timestamp() >= start_time),
                         key=_SORT_KEYS["updated_at"])
        shown = changed[:per_page]
        end_time = int(shown[-1].updated_at.timestamp()) if shown else start_time
        next_page = None
        if len(changed) > per_page:
            # Time-based, like Zendesk's export: the next page starts at the last time shown, so an
            # article can appear twice; a page all of one second moves past that second.
            next_start = end_time + 1 if int(shown[0].updated_at.timestamp()) == end_time else end_time
            next_page = f"{base_url}/api/v2/help_center/incremental/articles.json?" + urlencode(
                {"start_time": next_start, "per_page": per_page})
        return JSONResponse({"articles": [article_json(a, base_url) for a in shown], "count": len(shown),
                             "end_time": end_time, "next_page": next_page})

    async def article_page(request: Request) -> Response:
        match = re.match(r"(\d+)", request.path_params["article_slug"])
        article = None
        if match:
            wanted = int(match.group(1))
            article = next((c.articles[wanted] for c in centers.values() if wanted in c.articles), None)
        if article is None:
            return HTMLResponse("<h1>Oops, this help center no longer exists</h1>", status_code=404)
        return HTMLResponse(f"<!doctype html><html><head><title>{html_lib.escape(article.title)}</title></head>"
                            f"<body><article><h1>{html_lib.escape(article.title)}</h1>{article.body_html()}"
                            "</article></body></html>")

    async def touch(request: Request) -> Response:
        try:
            body = await json_object(request)
            article_id = int(body["id"])
        except (BodyError, KeyError, TypeError, ValueError):
            return JSONResponse({"error": 'send {"id": <article id>, "tenant"?, "title"?, "body_markdown"?}'},
                                status_code=400)
        tenant = body.get("tenant")
        holders = [name for name, c in centers.items() if article_id in c.articles and tenant in (None, name)]
        if len(holders) != 1:
            problem = "no tenant has" if not holders else "several tenants have (name one with 'tenant')"
            return JSONResponse({"error": f"{problem} article {article_id}"}, status_code=404 if not holders else 400)
        article = centers[holders[0]].touch(article_id, title=body.get("title"),
                                            body_markdown=body.get("body_markdown"))
        return JSONResponse({"tenant": holders[0], "article": article_json(article, base_url)})

    routes = []
    for suffix in (".json", ""):
        routes += [
            Route(f"/api/v2/help_center/incremental/articles{suffix}", incremental_articles, methods=["GET"]),
            Route(f"/api/v2/help_center/articles{suffix}", list_articles, methods=["GET"]),
            Route(f"/api/v2/help_center/articles/{{article_id:int}}{suffix}", show_article, methods=["GET"]),
            Route(f"/api/v2/help_center/articles/{{article_id:int}}{suffix}", delete_article, methods=["DELETE"]),
            Route(f"/api/v2/help_center/{{locale}}/articles{suffix}", list_articles, methods=["GET"]),
            Route(f"/api/v2/help_center/{{locale}}/articles/{{article_id:int}}{suffix}", show_article,
                  methods=["GET"]),
        ]
    return routes + [
        Route("/hc/{locale}/articles/{article_slug}", article_page, methods=["GET"]),
        Route("/_sim/help_center/touch", touch, methods=["POST"]),
    ]


def _invalid(description: str) -> JSONResponse:
    return JSONResponse({"error": "InvalidValue", "description": description}, status_code=400)

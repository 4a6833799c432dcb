"""Workspace metrics. Label values come from fixed sets: `kind` is an action name of
handlers.ACTION_KINDS, `outcome` one of LOGIN_OUTCOMES, REDRAFT_OUTCOMES or KPI_OUTCOMES, `what`
one of ADMIN_CHANGES, `page` one of ROLE_PAGES."""

from prometheus_client import Counter, Histogram

from services.workspace.handlers import ACTION_KINDS

LOGIN_OUTCOMES = ("success", "failure", "rate_limited", "csrf_refused")
REDRAFT_OUTCOMES = ("ok", "refused", "unavailable")
KPI_OUTCOMES = ("ok", "unavailable")
ADMIN_CHANGES = ("user_created", "user_changed", "token_created", "token_revoked", "rollback")
ROLE_PAGES = ("leads", "admin", "rollback")

ACTIONS = Counter(
    "supportflow_workspace_actions_total",
    "Actions agents took (published on agent.actions), by kind: approve, edit, reject, escalate, flag_context_loss, "
    "reassign, qa_severity, confirm_action, decline_action, redraft",
    ["kind"],
)
LOGINS = Counter(
    "supportflow_workspace_logins_total",
    "Login attempts by outcome: success, failure (wrong username or password), rate_limited, csrf_refused",
    ["outcome"],
)
REDRAFTS = Counter(
    "supportflow_workspace_redrafts_total",
    "New drafts asked of the drafter (Drafter.Draft) by outcome: ok, refused (blocked or empty), unavailable",
    ["outcome"],
)
REDRAFT_SECONDS = Histogram(
    "supportflow_workspace_redraft_seconds", "Time Drafter.Draft took to answer an agent's request for a new draft",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
)
KPI_FETCHES = Counter(
    "supportflow_workspace_kpi_fetches_total", "KPI panel reads from Learner.GetKpis by outcome: ok, unavailable",
    ["outcome"],
)
ADMIN_CHANGES_DONE = Counter(
    "supportflow_workspace_admin_changes_total",
    "Audited changes of users, API tokens and routing from the pages, by what: user_created, user_changed, "
    "token_created, token_revoked, rollback",
    ["what"],
)
ROLE_REFUSALS = Counter(
    "supportflow_workspace_role_refusals_total",
    "Requests refused (403) because the user's role or ownership does not allow them, by page: leads, admin, rollback",
    ["page"],
)

# Every series from the start, at 0: a rate over a counter that appears late misses its first step.
for _kind in ACTION_KINDS:
    ACTIONS.labels(_kind)
for _outcome in LOGIN_OUTCOMES:
    LOGINS.labels(_outcome)
for _outcome in REDRAFT_OUTCOMES:
    REDRAFTS.labels(_outcome)
for _outcome in KPI_OUTCOMES:
    KPI_FETCHES.labels(_outcome)
for _what in ADMIN_CHANGES:
    ADMIN_CHANGES_DONE.labels(_what)
for _page in ROLE_PAGES:
    ROLE_REFUSALS.labels(_page)

"""Workspace metrics. Label values come from fixed sets: `kind` is an action name of
handlers.ACTION_KINDS, `outcome` one of LOGIN_OUTCOMES."""

from prometheus_client import Counter

LOGIN_OUTCOMES = ("success", "failure", "rate_limited", "csrf_refused")

ACTIONS = Counter(
    "supportflow_workspace_actions_total",
    "Actions agents took on tickets (published on agent.actions), by kind: approve, edit, reject, escalate, flag_context_loss",
    ["kind"],
)
LOGINS = Counter(
    "supportflow_workspace_logins_total",
    "Login attempts by outcome: success, failure (wrong username or password), rate_limited, csrf_refused",
    ["outcome"],
)

# Every series from the start, at 0: a rate over a counter that appears late misses its first step.
for _kind in ("approve", "edit", "reject", "escalate", "flag_context_loss"):
    ACTIONS.labels(_kind)
for _outcome in LOGIN_OUTCOMES:
    LOGINS.labels(_outcome)

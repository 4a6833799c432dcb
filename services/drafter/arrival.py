"""Whether a question waits for something that has not arrived, and whether a text says anything
about arrival. Pure.

"Why have I not received my virtual card yet?" retrieves the article on creating a virtual card,
and "My transfer still hasn't shown up" the one on making a transfer: the passages share every
word that matters and answer another question. A customer who is waiting wants to hear when,
how or whether the thing arrives: a delivery time, a processing status, what to do if it is lost.
The offline drafter judges a reply off the question when the question waits for something and no
passage it quotes says a word about delivery, timing or status.

Both readings lean one way on purpose: the question side asks for an explicit sign of waiting, the
passage side accepts any mention of time or delivery. A miss sends the draft on as before; a false
alarm only holds it for an agent.
"""

from __future__ import annotations

import re

# Something expected that has not come: "hasn't arrived", "did not receive", "is yet to show up",
# "still pending", "when will my card arrive".
_NOT_YET = re.compile(
    r"(\bnot|n't|\bnever|\byet to|\bno sign of)\b[^.?!,;]{0,30}?\b(arriv\w*|receiv\w*|c[oa]me\b|coming|show(n|s|ed|ing)? up"
    r"|reach\w*|deliver\w*|appear\w*|credited|clear(ed)?|land(ed)?|get (it|there|here)"
    r"|(been|got|gotten) (sent|posted|mailed|it|my|them|the))"
    r"|(\bnot|n't)\b (here|there|in my (account|balance)|showing|visible)"
    r"|\b(still|yet|is|shows?|says?|showing|stuck)\b[^.?!,;]{0,15}?\b(waiting|pending)\b|\bwaiting (for|on)\b"
    r"|\bwhere('s| is| are)\b (my|the) (\w+ )?(money|card|funds|transfer|refund|payment|deposit|top[ -]?up|cash|package)s?\b(?=\s*(?:[?.!,;]|$|(yet|now|gone)\b))"
    r"|\btrack (my|the) (card|delivery|order|package|parcel|shipment|transfer|payment)"
    r"|\b(is|was|got|been) (it )?lost (in|during) (the )?(mail|post|delivery|transit)"
    r"|\b(taking|takes|took) (so|too|very) long\b|\bwhen (will|do|does|should|can) (i|my|it|the|we)\b[^.?!]{0,40}"
    r"\b(arriv\w*|come|get (it|here|there|to me)|receiv\w*|show up|reach\w*|be delivered|go through)"
    # "Why is my cash withdrawal pending?", "the status of my card", "my balance hasn't updated",
    # "the transfer has not gone through", "I don't see the deposit in my balance".
    r"|\b(why|how long)\b[^.?!]{0,40}\bpending\b"
    r"|\b(status|tracking)\b[^.?!]{0,30}\b(card|delivery|order|transfer|payment|top[ -]?up|refund|deposit)"
    r"|(\bnot|n't)\b[^.?!,;]{0,25}\b(updat\w*|reflect\w*|hit)\b"
    r"|\b(hasn't|has not|isn't|is not)\b[^.?!,;]{0,25}\b(gone through|go through|going through|complet\w*)\b"
    r"|\b(not|n't) (see|seeing|display\w*)\b[^.?!]{0,30}"
    r"\b(balance|account|statement|app|it|them|money|funds|cash|deposit|transfer|refund|top[ -]?up)\b",
    re.I,
)
# Not waiting for us: an amount short of what was asked ("did not receive the right amount of cash"),
# or a merchant's goods, which the bank's knowledge base cannot track (the question is a refund or a
# dispute).
_NOT_WAITING = re.compile(
    r"\breceiv\w* (the |all |my )?(right|full|correct|whole|entire|exact|all)\b"
    r"|\b(items?|products?|goods|packages?|parcels?|merchandise|purchases?|sellers?|merchants?|ordered (online|something|an item))\b",
    re.I,
)
# A passage that answers a waiting customer names a delivery, a time or a status.
_ARRIVAL = re.compile(
    r"\b(arriv\w*|deliver\w*|ship(s|ped|ping|ment)?|mail(ed|s)?|post(ed|al)?|courier|dispatch\w*|track\w*"
    r"|pending|processing|processed|clear(s|ed|ing)?|settle(s|d|ment)?|status|delay\w*|lost|stolen|expect\w*"
    r"|within|instant\w*|immediate\w*|same[- ]day|next[- ]day|overnight|reach(es|ed)?|credited|posts? to"
    r"|show(s|n)? up|appear(s|ed)?|seconds?|minutes?|hours?|days?|weeks?|months?|cut-?off|sent|on its way)\b",
    re.I,
)


def awaits_arrival(text: str) -> bool:
    """True when `text` says the writer is waiting for something that has not arrived yet."""
    return bool(_NOT_YET.search(text)) and not _NOT_WAITING.search(text)


def speaks_of_arrival(text: str) -> bool:
    """True when `text` says anything about delivery, timing or status."""
    return bool(_ARRIVAL.search(text))

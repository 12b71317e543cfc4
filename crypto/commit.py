"""The Commit message (RFC 9420 §12.4): proposals it applies and an optional UpdatePath."""

from typing import Annotated

from crypto.codec import Opt, Struct, Vec, struct
from crypto.proposals import ProposalOrRef
from crypto.treekem import UpdatePath


@struct
class Commit(Struct):
    proposals: Annotated[list[ProposalOrRef], Vec(ProposalOrRef)]
    path: Annotated[UpdatePath | None, Opt(UpdatePath)]

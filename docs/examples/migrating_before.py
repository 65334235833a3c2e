"""Before: the blocklist pattern of AuthX's revocation guide, for comparison (do not copy)."""

from authx import AuthX, AuthXConfig

# --8<-- [start:before]
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
blocklist: set[str] = set()  # grows with every logout; must be cleaned up by hand
issued: dict[str, list[str]] = {}  # every token ever issued, kept only to be able to log out everywhere


def issue(uid: str) -> str:
    token = auth.create_access_token(uid=uid)
    issued.setdefault(uid, []).append(token)
    return token


async def is_token_in_blocklist(token: str) -> bool:
    return token in blocklist


auth.set_token_blocklist(is_token_in_blocklist)


def logout_all(uid: str) -> None:
    blocklist.update(issued.pop(uid, []))  # one write per token the user ever received


# --8<-- [end:before]


for _ in range(3):
    issue("alice")
logout_all("alice")
assert len(blocklist) == 3

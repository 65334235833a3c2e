"""Before: the blocklist of AuthX's revocation guide, for comparison only."""

from authx import AuthX, AuthXConfig

auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
blocklist: set[str] = set()  # grows with every logout; cleaned up by hand
issued: dict[str, list[str]] = {}  # every token ever issued, for logout-all


def issue(uid: str) -> str:
    token = auth.create_access_token(uid=uid)
    issued.setdefault(uid, []).append(token)
    return token


async def is_token_in_blocklist(token: str) -> bool:
    return token in blocklist


auth.set_token_blocklist(is_token_in_blocklist)


def logout_all(uid: str) -> None:
    # One write per token the user ever received.
    blocklist.update(issued.pop(uid, []))


if __name__ == "__main__":
    for _ in range(3):
        issue("alice")
    logout_all("alice")
    assert len(blocklist) == 3

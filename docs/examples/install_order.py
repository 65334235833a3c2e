"""install() after AuthX's implicit-refresh middleware: refused, loudly."""

from authx import AuthX, AuthXConfig
from fastapi import FastAPI

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(
        JWT_SECRET_KEY="change-me-to-a-long-random-secret!",
        JWT_TOKEN_LOCATION=["cookies"],
    )
)
app.middleware("http")(auth.implicit_refresh_middleware)  # AuthX's, unchecked
try:
    authx_epoch.install(auth, store="memory://", app=app)
except authx_epoch.ConfigurationError as error:
    print(f"refused: {error}")
else:
    raise AssertionError("install() accepted a middleware registered before it")

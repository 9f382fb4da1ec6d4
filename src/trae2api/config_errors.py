"""What the operator is told when the settings are wrong: one line naming every missing or
malformed variable, and where each account value comes from (the seed's guide, protocol §1).

Pure: it composes messages from what ``config.load_settings`` found; it must not read the
environment, and never echoes a value (it may be a secret).
"""

from __future__ import annotations

from pydantic import ValidationError

from trae2api.errors import ConfigError

# Where an operator finds each account value (the seed's guide, protocol §1).
WHERE_TO_FIND = {
    "APP_ID": "Trae's app id: search Trae's log file ai_1_stdout.log for app_id",
    "CLIENT_ID": (
        "the OAuth client id: search Trae's main.log for ClientID "
        "(Trae IDE's public client id is ono9krqynydwx5)"
    ),
    "REFRESH_TOKEN": (
        "the OAuth refresh token: log in to Trae, then copy RefreshToken from Trae's "
        "storage.json (and do not open Trae on that machine afterwards)"
    ),
    "USER_ID": "your Trae user id: UserID in Trae's storage.json or main.log",
}


def invalid_variables(exc: ValidationError) -> dict[str, str]:
    """Variable -> why its value was refused (the first reason per variable)."""
    invalid: dict[str, str] = {}
    for error in exc.errors():
        location = error.get("loc") or ("?",)
        detail = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        # The input is deliberately not echoed: it may be a secret.
        invalid.setdefault(str(location[0]).upper(), detail)
    return invalid


def config_error(missing: list[str], invalid: dict[str, str], *, nothing_set: bool) -> ConfigError:
    """One line naming every missing and every malformed variable, and how to fix each."""
    variables = [*missing, *invalid]
    if len(variables) == 1 and missing:
        message = f"is not set. It is {WHERE_TO_FIND[missing[0]]}."
    elif len(variables) == 1:
        ((variable, detail),) = invalid.items()
        hint = f" It is {WHERE_TO_FIND[variable]}." if variable in WHERE_TO_FIND else ""
        message = f"is not valid: {detail}.{hint}"
    else:
        parts = [f"{name} is not set (it is {WHERE_TO_FIND[name]})" for name in missing]
        parts += [f"{name} is not valid: {detail}" for name, detail in invalid.items()]
        message = "; ".join(parts) + "."
    if missing:
        message += " Put them" if len(variables) > 1 else " Put it"
        message += " in the environment or in .env (see .env.example)."
    if nothing_set:
        message += " To try trae2api without a Trae account first, run: trae2api serve --demo"
    return ConfigError(", ".join(variables), message)

"""What the hypha-rpc scripts share: the server from the environment, the seed's Quick Start
manifest on mock models, and small checking helpers.

Env: FERROLITE_BASE_URL (the server, http://host:port), FERROLITE_TOKEN (a token of the
`default` workspace), FERROLITE_OTHER_TOKEN (a token of the `intruder` workspace), and for the
transport script FERROLITE_SLOW_API_BASE (an OpenAI-compatible upstream that answers late).
"""

import json
import os
import urllib.error
import urllib.request

from hypha_rpc import connect_to_server
from seed_quick_start import MESSAGES, MOCK_TEXT, QUICK_START  # noqa: F401 (shared)

BASE = os.environ["FERROLITE_BASE_URL"]
TOKEN = os.environ["FERROLITE_TOKEN"]
OTHER_TOKEN = os.environ["FERROLITE_OTHER_TOKEN"]



def check(condition, what):
    if not condition:
        raise AssertionError(what)


def http_post(path, body, token=TOKEN):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def raises(awaitable, *fragments):
    """Awaits something that must fail with every fragment in its message."""
    try:
        await awaitable
    except Exception as e:  # RemoteException, ConnectionAbortedError, ...
        text = str(e)
        for fragment in fragments:
            check(fragment in text, f"error {text!r} lacks {fragment!r}")
        return text
    raise AssertionError(f"no error; expected one with {fragments}")


async def connect(token, workspace, **config):
    return await connect_to_server({"server_url": BASE, "token": token, "workspace": workspace, **config})


async def start_quick_start(api):
    """Installs and starts the Quick Start app: (controller, app, session)."""
    controller = await api.get_service("public/server-apps")
    app = await controller.install(source=json.dumps(QUICK_START), overwrite=True)
    session = await controller.start(app["id"], wait_for_service="my-llm-service")
    return controller, app, session

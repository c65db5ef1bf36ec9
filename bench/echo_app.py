"""The reference for check-in throughput: a raw Starlette endpoint echoing the JSON body.

Served by ``uvicorn`` as users would serve it; ``python echo_app.py PORT`` serves it with
jobhooks' own HTTP protocol instead (answers in one write), to show what HTTP costs there.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    return Response(await request.body(), status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/api/v1/job-completions", echo, methods=["POST"])])


if __name__ == "__main__":
    import sys

    import uvicorn

    from jobhooks.api.protocol import OneWriteProtocol

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http=OneWriteProtocol,
        access_log=False,
        log_level="warning",
    )

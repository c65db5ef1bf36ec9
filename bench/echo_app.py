"""The reference for check-in throughput: a raw Starlette endpoint echoing the JSON body."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    return Response(await request.body(), status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/api/v1/job-completions", echo, methods=["POST"])])

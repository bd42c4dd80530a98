# A stock wasi:http proxy written in Python and built by componentize-py, a
# toolchain that is not ours: the tests deploy it to prove Bazaar serves
# components from other languages unchanged.

from wit_world import exports
from componentize_py_types import Ok
from wit_world.imports.types import (
    OutgoingResponse, ResponseOutparam, OutgoingBody, Fields, IncomingRequest)

class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam):
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(b"hello from python " + (request.path_with_query() or "").encode())
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)

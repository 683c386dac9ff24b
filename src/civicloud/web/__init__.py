"""The HTTP adapter: the FastAPI application, its middleware, error handling, core's API routes
and the server-rendered pages. Everything here is thin: it parses input, calls one service
function in the request's unit of work and formats the result."""

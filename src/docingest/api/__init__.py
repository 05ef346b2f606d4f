"""HTTP only: routing, auth, request/response shapes. Work is done by store/ and the worker."""

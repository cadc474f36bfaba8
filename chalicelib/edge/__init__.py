"""The edge: what turns HTTP into calls of the domain and back — request models (bodies and query
strings parsed), the caller's identity from Cognito tokens, errors mapped to statuses, the API's
description and the web client's files. It imports no store."""

"""Container healthcheck: exit 0 when the gateway answers 200 on /v2/health/ready, else 1.

A file rather than an inline `python -c` string: some compose implementations (podman-compose) split a
healthcheck command with spaces in its arguments wrongly.
"""

import os
import sys
import urllib.request

port = os.environ.get("CROSSDEPLOY_PORT", "8000")
url = f"http://127.0.0.1:{port}/v2/health/ready"
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # connection refused, 503 (HTTPError), timeout: not ready
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)

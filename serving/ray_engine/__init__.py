"""The Ray engine: the same gateway as a Ray Serve application (`crossdeploy serve --engine ray`).

application.py builds it (ingress + one model deployment per runtime family), replica.py is a model replica,
remote.py the ingress's registry over them, launch.py joins or starts the cluster. Importing this package
imports Ray; the in-process gateway never does."""

"""Attribution methods: one module per method, named after it, holding one
`AttributionMethod` subclass (see `pipeline.explain.base`). The registry finds them."""

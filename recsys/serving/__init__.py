"""The parts of the read path that :class:`recsys.service.Recommender` puts together: the served generations
(:mod:`~recsys.serving.generations`), what a request needs besides them (:mod:`~recsys.serving.requests`) and the
result type (:mod:`~recsys.serving.results`)."""

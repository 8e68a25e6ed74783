"""The application: the ``jaxsig`` command, its report, and the figures.

Only this wing may touch global JAX configuration, and only for the duration of a
command (see :mod:`jaxsig.app.cli`)."""

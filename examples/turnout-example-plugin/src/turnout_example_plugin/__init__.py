"""turnout-example-plugin: the ``com.example.static`` namer (fixed addresses per service)."""

__version__ = "0.1.0"

"""``mailman`` subcommands of the plugin (found through ``component_package``)."""

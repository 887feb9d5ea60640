"""What every command shares on its way in: settings checked up front, positional paths as overrides."""

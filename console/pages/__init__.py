"""The console's routes, one module per page (or group of pages), each listing its own ROUTES. Handlers take the
request alone and read the shared Console from the app's state."""

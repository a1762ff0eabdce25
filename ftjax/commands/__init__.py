"""One module per `ftjax` subcommand, each with absl flags and `main(argv)`."""

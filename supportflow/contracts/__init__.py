"""Generated protobuf and gRPC code for the contracts in `proto/`. Do not edit the generated files:
change the .proto and run `supportflow proto generate`."""

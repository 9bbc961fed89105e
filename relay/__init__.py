"""The relay: merges every node's flow stream into one, in time order."""

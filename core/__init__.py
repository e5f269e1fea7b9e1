"""What the receiver, the form builder and the workers share beyond the vocabulary: the signature check,
Redis key names, the session records and the Redis connection set-up."""

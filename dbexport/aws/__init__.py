"""The AWS runtime: the steps the state machine's Lambdas run, and what they share with the CDK stack."""

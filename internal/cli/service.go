package cli

func (a *app) service(args []string) error { return fail(2, "service: not yet") }

// The fp32 engine lands here.

-- Suspend: no new runs start, workers scale to zero; the object stays.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = true
return obj

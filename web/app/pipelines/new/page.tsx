import Shell from "@/components/Shell";
import NewPipeline from "@/components/NewPipeline";

export default function NewPipelinePage() {
  return (
    <Shell>
      <NewPipeline />
    </Shell>
  );
}
